"""
The ceiling: a raw aiokafka producer with the ingress's settings.

It publishes the same event bytes, keys and headers as the ingress would, as
fast as it can, keeping up to ``--window`` sends unacknowledged. With
``--count`` it publishes that many unique events once (pre-filling a topic);
otherwise it runs for ``--seconds`` and reports events/s.

    python -m bench.raw --seconds 8
    python -m bench.raw --count 100000 --run fill1
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench import bodies
from bench.common import emit, progress, settings
from message_events.kafka import new_producer
from message_events.settings import EVENTS_TOPIC


async def publish(
    events: list[bodies.Event],
    *,
    topic: str,
    seconds: float | None,
    window: int,
) -> dict[str, Any]:
    """Send events (cycling when timed) and return the count and rate."""
    producer: Any = new_producer(settings(), "bench.raw")
    await producer.start()
    try:
        pending: list[Any] = []
        ends: dict[int, int] = {}
        sent = 0
        started = time.perf_counter()
        deadline = started + seconds if seconds is not None else None
        while True:
            if deadline is None and sent >= len(events):
                break
            if deadline is not None and time.perf_counter() >= deadline:
                break
            event = events[sent % len(events)]
            pending.append(
                await producer.send(
                    topic, event.raw, key=event.key, headers=bodies.headers(event)
                )
            )
            sent += 1
            if len(pending) >= window:
                _note_ends(ends, await asyncio.gather(*pending))
                pending.clear()
        _note_ends(ends, await asyncio.gather(*pending))
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {
        "events": sent,
        "seconds": elapsed,
        "events_per_s": sent / elapsed,
        "ends": ends,
    }


def _note_ends(ends: dict[int, int], metadata: list[Any]) -> None:
    """Keep each partition's true end: the embedded broker's reported one lags."""
    for meta in metadata:
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)


def main() -> None:
    """Entry point of ``python -m bench.raw``."""
    parser = argparse.ArgumentParser(prog="python -m bench.raw")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--run", default="raw")
    parser.add_argument("--window", type=int, default=2000)
    args = parser.parse_args()
    topic = settings().topic(EVENTS_TOPIC)
    count = args.count if args.count is not None else 20000
    events = list(bodies.events(args.run, count))
    seconds = None if args.count is not None else (args.seconds or 8.0)
    progress(f"raw producer: {count} events to {topic}")
    result = asyncio.run(
        publish(events, topic=topic, seconds=seconds, window=args.window)
    )
    emit(result)


if __name__ == "__main__":
    main()
