"""
One processor instance draining a pre-filled events topic, with dedup on.

The clock starts when the group has formed and every assigned partition's
dedup state is restored (consumption starts right after), and stops when the
group's committed offsets reach the end of every partition, read with the
consumer's ``committed()`` (the group-offsets admin call breaks the
connection on the embedded broker).

    python -m bench.drain delivery --ends '{"0": 8000, "1": 8200, ...}'
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.common import emit, progress, settings
from message_events import logs, metrics
from message_events.kafka import new_consumer
from message_events.settings import EVENTS_TOPIC, Settings
from processors import Processor

_TICK_S = 0.02
_CHECK_S = 0.1


async def drain(
    name: str, ends_by_partition: dict[int, int], timeout_s: float
) -> dict[str, Any]:
    """Run one processor until its committed offsets reach the topic's end."""
    config = settings()
    topic = config.topic(EVENTS_TOPIC)
    monitor: Any = new_consumer(config, config.group_id(name), f"bench.{name}")
    await monitor.start()
    processor = Processor(config, name)
    try:
        ends = {TopicPartition(topic, p): n for p, n in ends_by_partition.items()}
        monitor.assign(list(ends))
        expected = sum(ends.values())
        deadline = time.monotonic() + timeout_s
        await processor.start()
        started = await _restored(processor, config, deadline)
        cpu_started = time.process_time()
        progress(f"{name}: group formed, draining {expected} events")
        finished = await _committed(monitor, name, ends, deadline)
        cpu = time.process_time() - cpu_started
    finally:
        await processor.stop()
        await monitor.stop()
    seconds = finished - started
    return {
        "processor": name,
        "events": expected,
        "seconds": seconds,
        "events_per_s": expected / seconds,
        # CPU time of this process per event: steadier than the rate when
        # other processes share the cores.
        "cpu_us_per_event": cpu / expected * 1e6,
    }


async def _restored(processor: Processor, config: Settings, deadline: float) -> float:
    while time.monotonic() < deadline:
        assigned = processor.assigned
        if len(assigned) == config.events_partitions and all(
            processor.state(p) is not None for p in assigned
        ):
            return time.perf_counter()
        await asyncio.sleep(_TICK_S / 2)
    msg = "the processor's group did not form in time"
    raise RuntimeError(msg)


async def _committed(
    monitor: Any, name: str, ends: dict[TopicPartition, int], deadline: float
) -> float:
    last_check = 0.0
    while time.monotonic() < deadline:
        # The processor's lag gauge is cheap to read but follows the broker's
        # reported end, which can lag; committed() decides.
        stamp = time.perf_counter()
        if _caught_up(name, ends) or stamp - last_check > _CHECK_S:
            last_check = stamp
            offsets = {tp: await monitor.committed(tp) for tp in ends}
            if all((offsets[tp] or 0) >= end for tp, end in ends.items()):
                return stamp
        await asyncio.sleep(_TICK_S)
    msg = f"{name} did not commit to the end in time"
    raise RuntimeError(msg)


def _caught_up(name: str, ends: dict[TopicPartition, int]) -> bool:
    lags = {
        sample.labels["partition"]: sample.value
        for family in metrics.CONSUMER_LAG.collect()
        for sample in family.samples
        if sample.labels["processor"] == name
    }
    return all(
        lags.get(str(tp.partition), 1) <= 0 for tp, end in ends.items() if end > 0
    )


def main() -> None:
    """Entry point of ``python -m bench.drain``."""
    parser = argparse.ArgumentParser(prog="python -m bench.drain")
    parser.add_argument("processor", choices=("inbound", "delivery", "mms"))
    parser.add_argument("--ends", required=True, help='JSON {"partition": end offset}')
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args()
    ends = {int(p): int(n) for p, n in orjson.loads(args.ends).items()}
    config = settings()
    if args.log is not None:
        with args.log.open("a", encoding="utf-8") as stream:
            logs.configure(config.log_level, "json", stream)
            emit(asyncio.run(drain(args.processor, ends, args.timeout)))
    else:
        logs.configure(config.log_level, "json", sys.stderr)
        emit(asyncio.run(drain(args.processor, ends, args.timeout)))


if __name__ == "__main__":
    main()
