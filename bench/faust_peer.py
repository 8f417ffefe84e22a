"""
The peer: faust-streaming doing the same dedup with a Table.

Per record it does the delivery processor's work: validate the item, take its
identity, skip it when the ``dedup`` Table has an unexpired entry, otherwise
record the entry and publish the ``DeliveryStatus`` of delivery events. It
drains the pre-filled events topic; the rate runs from the first record
handled to the last one.

Faust is imported at run time (it is only in the ``bench`` extra).

    python -m bench.faust_peer --expected 100000
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import tempfile
import time
import uuid
from typing import Any

from bench.common import emit, progress, settings
from message_events.settings import DELIVERY_TOPIC, EVENTS_TOPIC
from processors.handlers import DeliveryHandler
from schemas.events import DELIVERY_TYPES, CallbackEvent
from schemas.identity import event_identity


def build_app(expected: int, result: dict[str, Any]) -> Any:
    """A Faust app whose agent de-duplicates the events topic."""
    faust: Any = importlib.import_module("faust")
    config = settings()
    app = faust.App(
        f"bench-faust-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{config.kafka_bootstrap_servers}",
        store="memory://",
        topic_partitions=config.events_partitions,
        topic_replication_factor=config.replication_factor,
        producer_acks=-1,
        producer_linger_ms=config.producer_linger_ms,
        stream_buffer_maxsize=config.consumer_max_poll_records,
        web_enabled=False,
        datadir=tempfile.mkdtemp(prefix="bench-faust-"),
    )
    source = app.topic(
        config.topic(EVENTS_TOPIC), key_serializer="raw", value_serializer="raw"
    )
    sink = app.topic(
        config.topic(f"faust.{DELIVERY_TOPIC}"),
        key_serializer="raw",
        value_serializer="raw",
    )
    seen = app.Table("dedup", default=int, key_type=str, value_type=int)
    handler = DeliveryHandler()
    window = config.dedup_window_seconds

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def dedup(stream: Any) -> None:
        handled = 0
        async for value in stream:
            if handled == 0:
                result["started"] = time.perf_counter()
            now = int(time.time())
            event = CallbackEvent.model_validate_json(value)
            identity = event_identity(event)
            key = identity.event_id
            if seen[key] <= now:
                seen[key] = now + window
                if event.type in DELIVERY_TYPES:
                    status = handler.status_of(event.type)
                    record = handler.record(event, identity, status)
                    await sink.send(key=event.message.id.encode(), value=record)
            handled += 1
            if handled >= expected:
                result["finished"] = time.perf_counter()
                result["handled"] = handled
                asyncio.get_running_loop().call_soon(app_stop.set)

    app_stop = asyncio.Event()
    result["stop"] = app_stop
    return app


async def _run(app: Any, result: dict[str, Any], timeout_s: float) -> None:
    await app.start()
    try:
        await asyncio.wait_for(result["stop"].wait(), timeout_s)
    finally:
        await app.stop()


def main() -> None:
    """Entry point of ``python -m bench.faust_peer``."""
    parser = argparse.ArgumentParser(prog="python -m bench.faust_peer")
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result: dict[str, Any] = {}
    progress(f"faust: draining {args.expected} events")
    try:
        app = build_app(args.expected, result)
        asyncio.run(_run(app, result, args.timeout))
    except Exception as exc:  # any failure is the measured outcome
        emit(
            {"error": f"{type(exc).__name__}: {exc}", "handled": result.get("handled")}
        )
        return
    seconds = result["finished"] - result["started"]
    emit(
        {
            "events": result["handled"],
            "seconds": seconds,
            "events_per_s": result["handled"] / seconds,
        }
    )


if __name__ == "__main__":
    main()
