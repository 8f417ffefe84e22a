"""
Re-publishing dead letters to the events topic, once the cause is fixed.

A dead letter whose item is routable now (after a schema or code fix) is
published to the events topic exactly as the ingress would have published it,
with its original request id and receive time and a ``replayed-from`` header.
Items still unroutable stay where they are and are counted, and so are
letters of items too large for one record (``rawRef``, their bytes in chunks
on the blobs topic): they would be too large for the events topic too, and
are counted as ``too_large``, never republished. Progress is
committed under the consumer group ``message-events.replay``, so a second run
starts where the first ended; duplicates a re-run might cause are absorbed by
the processors' dedup like any Bandwidth retry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from typing import Any

import orjson
from aiokafka import TopicPartition
from pydantic.alias_generators import to_camel
from tqdm import tqdm

from ingest.body import InvalidBody, parse_item
from ingest.records import route_items
from message_events.errors import BrokerError
from message_events.kafka import new_consumer, new_producer, translated
from message_events.settings import DLQ_TOPIC, EVENTS_TOPIC, Settings

log = logging.getLogger(__name__)

_IDLE_ROUNDS = 3


@dataclasses.dataclass
class ReplayReport:
    """What a replay did (or, in a dry run, would do)."""

    read: int = 0
    replayed: int = 0
    still_invalid: int = 0
    unreadable: int = 0
    too_large: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts, for printing, in camelCase like every JSON we write."""
        return {to_camel(k): v for k, v in dataclasses.asdict(self).items()}


async def replay_dead_letters(
    settings: Settings,
    *,
    dry_run: bool,
    from_beginning: bool = False,
    limit: int | None = None,
    progress: bool = True,
) -> ReplayReport:
    """Read the dead-letter topic and re-publish the items now routable."""
    dlq = settings.topic(DLQ_TOPIC)
    group = f"{settings.topic_prefix}message-events.replay"
    consumer = new_consumer(settings, None if dry_run else group, "replay")
    producer = None if dry_run else new_producer(settings, "replay")
    report = ReplayReport()
    with translated("replaying dead letters", topic=dlq):
        await consumer.start()
        if producer is not None:
            await producer.start()
        try:
            await _read_all(
                consumer, producer, settings, report, from_beginning, limit, progress
            )
        finally:
            await consumer.stop()
            if producer is not None:
                await producer.stop()
    return report


async def _read_all(
    consumer: Any,
    producer: Any,
    settings: Settings,
    report: ReplayReport,
    from_beginning: bool,
    limit: int | None,
    progress: bool,
) -> None:
    dlq = settings.topic(DLQ_TOPIC)
    partitions = consumer.partitions_for_topic(dlq) or set()
    if not partitions:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(dlq) or set()
    if not partitions:
        msg = "no dead-letter topic"
        raise BrokerError(msg, topic=dlq)
    tps = [TopicPartition(dlq, p) for p in sorted(partitions)]
    consumer.assign(tps)
    starts = await _starts(consumer, tps, from_beginning or producer is None)
    ends = await consumer.end_offsets(tps)
    total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
    bar = tqdm(total=total, unit="letter", disable=not progress, file=sys.stderr)
    idle = 0
    try:
        while idle < _IDLE_ROUNDS and (limit is None or report.read < limit):
            batch = await consumer.getmany(timeout_ms=300)
            if not batch:
                idle += 1
                continue
            idle = 0
            sent: list[asyncio.Future[Any]] = []
            done: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for record in records[: None if limit is None else limit - report.read]:
                    future = await _replay_one(record, producer, settings, report)
                    if future is not None:
                        sent.append(future)
                    done[tp] = record.offset + 1
                    bar.update(1)
            if producer is not None and done:
                # Every re-published item is acknowledged before the dead
                # letters behind it are marked as done, and only the letters
                # read are (``--limit`` may stop inside a fetched batch).
                await asyncio.gather(*sent)
                await consumer.commit(done)
    finally:
        bar.close()


async def _starts(
    consumer: Any, tps: list[TopicPartition], from_beginning: bool
) -> dict[TopicPartition, int]:
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    starts = {}
    for tp in tps:
        committed = None if from_beginning else await consumer.committed(tp)
        if committed is not None:
            consumer.seek(tp, committed)
        else:
            await consumer.seek_to_beginning(tp)
        starts[tp] = await consumer.position(tp)
    return starts


async def _replay_one(
    record: Any, producer: Any, settings: Settings, report: ReplayReport
) -> asyncio.Future[Any] | None:
    report.read += 1
    where = {"partition": record.partition, "offset": record.offset}
    try:
        letter = orjson.loads(record.value)
        text = letter["raw"]
        if text is None and letter.get("rawRef"):
            report.too_large += 1
            log.warning(
                "dead letter kept by reference, not replayed",
                extra={"fields": where},
            )
            return None
        item = parse_item(text)
        request_id, received_at = letter["requestId"], letter["receivedAt"]
    except (orjson.JSONDecodeError, InvalidBody, KeyError, TypeError, AttributeError):
        report.unreadable += 1
        log.warning("unreadable dead letter", extra={"fields": where})
        return None
    routed = route_items(
        [item], settings=settings, request_id=request_id, received_at=received_at
    )
    events = [r for r in routed.records if r.topic == settings.topic(EVENTS_TOPIC)]
    if not events:
        report.still_invalid += 1
        return None
    (out,) = events
    report.replayed += 1
    if producer is None:
        return None
    origin = f"{record.topic}:{record.partition}:{record.offset}".encode()
    headers = [*out.headers, ("replayed-from", origin)]
    future: asyncio.Future[Any] = await producer.send(
        out.topic, value=out.value, key=out.key, headers=headers
    )
    return future
