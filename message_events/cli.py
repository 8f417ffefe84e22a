"""
The ``message-events`` command: ``run``, ``ingest``, ``process``, ``topics``,
``tail`` and ``replay``. Each subcommand has ``--help``.

Settings come from the environment (``message_events.settings``). When
``KAFKA_BOOTSTRAP_SERVERS`` is unset, ``run`` starts the embedded broker and
writes its address to ``.message-events-broker`` in the working folder, where
the other commands find it when ``KAFKA_BOOTSTRAP_SERVERS`` is unset.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from message_events import logs
from message_events.broker import EmbeddedBroker
from message_events.errors import MessageEventsError
from message_events.settings import PROCESSORS, Settings, load_settings
from message_events.topics import declared_topics, ensure_topics

log = logging.getLogger("message_events")

BROKER_FILE = Path(".message-events-broker")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        if args.command is _tail:
            # stdout carries the records; logs go to stderr.
            logs.configure("WARNING", settings.log_format, sys.stderr)
        else:
            logs.configure(settings.log_level, settings.log_format)
        status: int = asyncio.run(args.command(args, settings))
        return status
    except MessageEventsError as exc:
        print(f"message-events: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="message-events",
        description="Bandwidth messaging callbacks into Kafka, as clean streams.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="ingress and all three processors in one process",
        description="Run the ingress and the inbound, delivery and mms "
        "processors in one process. Without KAFKA_BOOTSTRAP_SERVERS it starts "
        "the embedded broker and stops it on exit.",
    )
    _ingress_arguments(run)
    run.set_defaults(command=_run)

    ingest = commands.add_parser(
        "ingest",
        help="the HTTP ingress alone",
        description="Serve POST /callbacks/messaging and publish every item.",
    )
    _ingress_arguments(ingest)
    ingest.set_defaults(command=_ingest)

    process = commands.add_parser(
        "process",
        help="one processor: inbound, delivery or mms",
        description="Run one processor as a member of its consumer group, with "
        "/healthz, /readyz and /metrics on PROCESSOR_HTTP_PORT.",
    )
    process.add_argument("processor", choices=PROCESSORS)
    process.add_argument(
        "--port", type=int, default=None, help="health and metrics port (9090)"
    )
    process.set_defaults(command=_process)

    topics = commands.add_parser(
        "topics",
        help="create or verify every topic",
        description="Create missing topics with their partitions and cleanup "
        "policy; verify the partitions of existing ones.",
    )
    topics.set_defaults(command=_topics)

    tail = commands.add_parser(
        "tail",
        help="print a topic's records as JSON lines",
        description="Print records as JSON lines: topic, partition, offset, "
        "key, headers and value (parsed when it is JSON).",
    )
    tail.add_argument("topic", help="full topic name, e.g. messaging.inbound")
    tail.add_argument("--from-end", action="store_true", help="only new records")
    tail.add_argument("--max", type=int, default=None, help="stop after N records")
    tail.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="stop after this many seconds without a record",
    )
    tail.set_defaults(command=_tail)

    replay = commands.add_parser(
        "replay",
        help="re-publish dead letters to the events topic",
        description="Read the dead-letter topic and re-publish every item that "
        "is routable now (after a fix) to the events topic. Progress is kept in "
        "the group message-events.replay, so a second run continues after the "
        "letters the first one read, still invalid ones included.",
    )
    replay.add_argument("--dry-run", action="store_true", help="count, publish nothing")
    replay.add_argument(
        "--from-beginning",
        action="store_true",
        help="ignore the progress of earlier runs: letters that were still "
        "invalid then are looked at again",
    )
    replay.add_argument(
        "--limit", type=int, default=None, help="read at most N letters"
    )
    replay.set_defaults(command=_replay)
    return parser


def _ingress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=None, help="HTTP port (8080)")
    parser.add_argument(
        "--no-auth", action="store_true", help="accept callbacks without credentials"
    )


def _with_broker_file(settings: Settings) -> Settings:
    if settings.kafka_bootstrap_servers or not BROKER_FILE.exists():
        return settings
    address = BROKER_FILE.read_text().strip()
    return settings.model_copy(update={"kafka_bootstrap_servers": address})


@contextlib.asynccontextmanager
async def _broker(settings: Settings) -> AsyncIterator[Settings]:
    """Settings with a bootstrap address: the configured one or an embedded broker."""
    if settings.kafka_bootstrap_servers:
        yield settings
        return
    broker = await asyncio.to_thread(_start_embedded)
    log.info(
        "embedded broker started (memory only)",
        extra={"fields": {"bootstrap": broker.bootstrap_servers}},
    )
    try:
        yield settings.model_copy(
            update={"kafka_bootstrap_servers": broker.bootstrap_servers}
        )
    finally:
        await asyncio.to_thread(_stop_embedded, broker)


def _start_embedded() -> EmbeddedBroker:
    broker = EmbeddedBroker()
    broker.start()
    BROKER_FILE.write_text(broker.bootstrap_servers + "\n")
    return broker


def _stop_embedded(broker: EmbeddedBroker) -> None:
    BROKER_FILE.unlink(missing_ok=True)
    broker.stop()


def _stop_signal() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve(app: web.Application, port: int, settings: Settings) -> web.AppRunner:
    runner = web.AppRunner(
        app, shutdown_timeout=settings.shutdown_drain_seconds, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, port)
    await site.start()
    log.info("listening", extra={"fields": {"host": settings.http_host, "port": port}})
    return runner


async def _until_stopped(stop: asyncio.Event, watched: list[Any]) -> None:
    """Wait for a signal, or for a processor loop to die (then re-raise)."""
    waiters = [asyncio.ensure_future(p.wait()) for p in watched]
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait(
        [stopper, *waiters], return_when=asyncio.FIRST_COMPLETED
    )
    for task in (stopper, *waiters):
        if task not in done:
            task.cancel()
    for task in done:
        if task is not stopper:
            task.result()
            msg = "a processor loop ended by itself"
            raise MessageEventsError(msg)


def _ingress(settings: Settings, port: int, *, no_auth: bool) -> Any:
    from ingest import IngressServer

    # Built before anything starts: it refuses to run without credentials.
    return IngressServer(settings, port=port, auth_required=not no_auth)


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from processors import Processor

    port = args.port if args.port is not None else settings.http_port
    _ingress(settings, port, no_auth=args.no_auth)
    async with _broker(settings) as settings:
        await ensure_topics(settings)
        stop = _stop_signal()
        server = _ingress(settings, port, no_auth=args.no_auth)
        processors = [Processor(settings, name) for name in PROCESSORS]
        await server.start()
        # Joining a group takes seconds; the three join side by side.
        await asyncio.gather(*(processor.start() for processor in processors))
        try:
            await _until_stopped(stop, processors)
        finally:
            await server.stop()
            for processor in processors:
                await processor.stop()
    return 0


async def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    settings = _with_broker_file(settings)
    port = args.port if args.port is not None else settings.http_port
    server = _ingress(settings, port, no_auth=args.no_auth)
    await ensure_topics(settings)
    stop = _stop_signal()
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


async def _process(args: argparse.Namespace, settings: Settings) -> int:
    from processors import Processor
    from processors.health import health_app

    settings = _with_broker_file(settings)
    port = args.port if args.port is not None else settings.processor_http_port
    await ensure_topics(settings)
    stop = _stop_signal()
    processor = Processor(settings, args.processor)
    # Probes answer from the start: /healthz is 200 and /readyz 503 while the
    # processor joins its group, which takes seconds.
    runner = await _serve(health_app([processor]), port, settings)
    try:
        await processor.start()
        await _until_stopped(stop, [processor])
    finally:
        await processor.stop()
        await runner.cleanup()
    return 0


async def _topics(_: argparse.Namespace, settings: Settings) -> int:
    settings = _with_broker_file(settings)
    outcome = await ensure_topics(settings)
    for spec in declared_topics(settings):
        line = (
            f"{spec.name:<48} {spec.partitions:>3}  "
            f"{spec.cleanup_policy:<15} {outcome[spec.name]}"
        )
        print(line)
    return 0


async def _tail(args: argparse.Namespace, settings: Settings) -> int:
    from aiokafka import TopicPartition

    from message_events.kafka import new_consumer

    settings = _with_broker_file(settings)
    consumer = new_consumer(settings, None, "tail")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(args.topic)
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(args.topic)
        if not partitions:
            print(f"message-events: no topic {args.topic}", file=sys.stderr)
            return 1
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if args.from_end:
            await consumer.seek_to_end(*tps)
        else:
            await consumer.seek_to_beginning(*tps)
        await _print_records(consumer, args.max, args.idle_timeout)
    finally:
        await consumer.stop()
    return 0


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from message_events.replay import replay_dead_letters

    settings = _with_broker_file(settings)
    report = await replay_dead_letters(
        settings,
        dry_run=args.dry_run,
        from_beginning=args.from_beginning,
        limit=args.limit,
        progress=sys.stderr.isatty(),
    )
    print(orjson.dumps({"dryRun": args.dry_run, **report.as_dict()}).decode())
    return 0


async def _print_records(
    consumer: Any, limit: int | None, idle_s: float | None
) -> None:
    printed = 0
    idle = 0.0
    while limit is None or printed < limit:
        batch = await consumer.getmany(timeout_ms=500)
        if not batch:
            idle += 0.5
            if idle_s is not None and idle >= idle_s:
                return
            continue
        idle = 0.0
        records = [record for part in batch.values() for record in part]
        if limit is not None:
            records = records[: limit - printed]
        for record in records:
            sys.stdout.write(_record_line(record) + "\n")
        printed += len(records)
        sys.stdout.flush()


def _record_line(record: Any) -> str:
    value: Any = None
    if record.value is not None:
        try:
            value = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            value = record.value.decode("utf-8", "replace")
    line = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.decode("utf-8", "replace")
        if record.key is not None
        else None,
        "headers": {
            k: bytes(v).decode("utf-8", "replace") for k, v in record.headers or ()
        },
        "value": value,
    }
    return orjson.dumps(line).decode()


if __name__ == "__main__":
    raise SystemExit(main())
