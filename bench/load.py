"""
The load generator: an aiohttp client with an open-loop rate schedule.

Each step sends bodies of ten unique events at a fixed rate for a fixed time,
whether or not earlier requests were answered, so a slow server is not
offered less load. A response time runs from the moment the schedule said
to send to the moment the response was read: time the request spent queued
in the loader counts too (no coordinated omission).

    python -m bench.load --url http://127.0.0.1:8080/callbacks/messaging \
        --rates 200,400,800 --seconds 4 --run r1 [--until-saturated] [--ids F]

It prints one JSON object: a list of steps with the offered and achieved
events/s and the response-time percentiles of the answered (200) requests.
With ``--ids`` it also writes ``{eventId: scheduled send time}`` (wall clock)
for the end-to-end measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import orjson

from bench import bodies
from bench.common import emit, percentile, progress

# Below this share of the offered load, a step is saturated.
SATURATED = 0.9
_HEADERS = {"Content-Type": "application/json"}


class Outcome(NamedTuple):
    """One request: when it was due, sent and answered, and how."""

    due: float
    sent: float
    done: float
    status: int


async def _post(
    session: aiohttp.ClientSession, url: str, data: bytes, due: float
) -> Outcome:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    try:
        async with session.post(url, data=data, headers=_HEADERS) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    return Outcome(due, sent, loop.time(), status)


async def step(
    session: aiohttp.ClientSession,
    url: str,
    batch: list[bodies.Body],
    rate: float,
) -> tuple[dict[str, Any], list[Outcome]]:
    """Send ``batch`` at ``rate`` bodies/s and wait for every answer."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    tasks = []
    for i, body in enumerate(batch):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_post(session, url, body.data, due)))
    outcomes = list(await asyncio.gather(*tasks))
    ok = [o for o in outcomes if o.status == 200]
    elapsed = max(o.done for o in outcomes) - start
    latencies = [(o.done - o.due) * 1000 for o in ok]
    # How late the loader itself sent: part of every response time above.
    lags = [(o.sent - o.due) * 1000 for o in outcomes]
    events = len(ok) * bodies.EVENTS_PER_BODY
    summary = {
        "offered_bodies_per_s": rate,
        "offered_events_per_s": rate * bodies.EVENTS_PER_BODY,
        "requests": len(outcomes),
        "ok": len(ok),
        "errors": len(outcomes) - len(ok),
        "achieved_events_per_s": events / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "loader_lag_p99_ms": percentile(lags, 99),
    }
    return summary, outcomes


def event_times(
    batch: list[bodies.Body], outcomes: list[Outcome], wall_offset: float
) -> dict[str, float]:
    """Wall-clock scheduled send time of every event of answered bodies."""
    times: dict[str, float] = {}
    for body, outcome in zip(batch, outcomes, strict=True):
        if outcome.status != 200:
            continue
        for event in body.events:
            times[event.event_id] = outcome.due + wall_offset
    return times


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every step of the schedule, stopping past saturation if asked."""
    rates = [float(r) for r in args.rates.split(",")]
    steps: list[dict[str, Any]] = []
    times: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=30)
    made = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for rate in rates:
            count = max(1, round(rate * args.seconds))
            batch = bodies.bodies(args.run, count, start=made)
            made += count * bodies.EVENTS_PER_BODY
            loop = asyncio.get_running_loop()
            wall_offset = time.time() - loop.time()
            summary, outcomes = await step(session, args.url, batch, rate)
            steps.append(summary)
            progress(
                f"{args.label}: offered {summary['offered_events_per_s']:.0f} ev/s, "
                f"achieved {summary['achieved_events_per_s']:.0f} ev/s, "
                f"p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, "
                f"errors {summary['errors']}, "
                f"loader lag p99 {summary['loader_lag_p99_ms']:.1f} ms"
            )
            if args.ids is not None:
                times.update(event_times(batch, outcomes, wall_offset))
            achieved = summary["achieved_events_per_s"]
            if args.until_saturated and (
                achieved < SATURATED * summary["offered_events_per_s"]
            ):
                break
            await asyncio.sleep(args.pause)
    if args.ids is not None:
        args.ids.write_bytes(orjson.dumps(times))
    return {"steps": steps}


def main() -> None:
    """Entry point of ``python -m bench.load``."""
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rates", required=True, help="bodies/s, comma separated")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--run", required=True, help="makes message ids unique")
    parser.add_argument("--label", default="load")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--pause", type=float, default=1.0)
    parser.add_argument("--until-saturated", action="store_true")
    parser.add_argument("--ids", type=Path, default=None)
    args = parser.parse_args()
    emit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
