"""
Dedup state: restoring 1,000,000 entries from a compacted dedup topic.

It fills a dedup topic with event entries whose expiries spread over the
window (as 1,000,000 entries written over 48 h would be), restores every
partition with ``processors.store.restore_partitions`` and reports
entries/s. A second restore under tracemalloc measures what the restored
state holds: the traced memory that goes away when the states are dropped.

    python -m bench.restore --entries 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import time
import tracemalloc
from typing import Any

from bench.common import emit, progress, settings
from message_events.kafka import new_consumer, new_producer
from message_events.settings import DELIVERY_TOPIC, Settings
from processors import store

PROCESSOR = "delivery"


async def fill(config: Settings, entries: int) -> None:
    """Write ``entries`` event entries, round robin over the partitions."""
    topic = config.dedup_topic(PROCESSOR)
    partitions = config.events_partitions
    window = config.dedup_window_seconds
    now = int(time.time())
    producer: Any = new_producer(config, "bench.restore")
    await producer.start()
    try:
        builders = [producer.create_batch() for _ in range(partitions)]
        pending = []
        for i in range(entries):
            digest = hashlib.blake2b(b"%d" % i, digest_size=16).digest()
            # Written over the whole window: the oldest expire first.
            expiry = now + 60 + i * window // entries
            key, value = store.event_entry(digest, expiry)
            p = i % partitions
            if builders[p].append(key=key, value=value, timestamp=None) is None:
                pending.append(
                    await producer.send_batch(builders[p], topic, partition=p)
                )
                builders[p] = producer.create_batch()
                builders[p].append(key=key, value=value, timestamp=None)
        for p, builder in enumerate(builders):
            pending.append(await producer.send_batch(builder, topic, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def restore(config: Settings) -> tuple[int, float, Any]:
    """Restore every partition; returns entries, seconds and the states."""
    reader: Any = new_consumer(config, None, "bench.restore")
    await reader.start()
    try:
        started = time.perf_counter()
        states, _ = await store.restore_partitions(
            reader,
            config.dedup_topic(PROCESSOR),
            config.topic(DELIVERY_TOPIC),
            list(range(config.events_partitions)),
            config.dedup_window_seconds,
        )
        seconds = time.perf_counter() - started
    finally:
        await reader.stop()
    return sum(len(s) for s in states.values()), seconds, states


async def measure(entries: int) -> dict[str, Any]:
    """Fill, restore timed, restore traced."""
    config = settings()
    progress(f"restore: writing {entries} dedup entries")
    await fill(config, entries)
    progress("restore: restoring (timed)")
    restored, seconds, states = await restore(config)
    del states
    gc.collect()
    progress("restore: restoring again under tracemalloc")
    tracemalloc.start()
    try:
        _, _, states = await restore(config)
        gc.collect()
        holding = tracemalloc.get_traced_memory()[0]
        del states
        gc.collect()
        released = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return {
        "entries": restored,
        "seconds": seconds,
        "entries_per_s": restored / seconds,
        "state_bytes": holding - released,
        "bytes_per_entry": (holding - released) / restored,
    }


def main() -> None:
    """Entry point of ``python -m bench.restore``."""
    parser = argparse.ArgumentParser(prog="python -m bench.restore")
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    emit(asyncio.run(measure(args.entries)))


if __name__ == "__main__":
    main()
