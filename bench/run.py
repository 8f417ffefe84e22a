"""
``make bench``: every measurement of issue 4 in one bounded run.

Set-up (2 cores): the embedded broker (Tansu) runs in its own process; the
ingress (``message-events ingest --no-auth``), the naive app, the load
generator, each processor drain, the Faust peer and the restore each run in
their own Python process, so no two Python measurements share an event loop.
The load generator and the server under test still share the two cores with
the broker: figures are for this whole machine, not one core per part.

Progress goes to stderr; the table, then the summary line, to stdout.
Results land in ``bench/results/`` (JSON, table, PNG, logs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import bodies, report
from bench.common import percentile, progress
from message_events.broker import EmbeddedBroker, free_port
from message_events.settings import (
    DELIVERY_TOPIC,
    INBOUND_TOPIC,
    MMS_TOPIC,
    PROCESSORS,
    load_settings,
)
from message_events.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
CLI = str(Path(sys.executable).with_name("message-events"))

RAMP_FACTOR = 1.35
RAMP_STEPS = 14
# End to end also runs at this share of saturation, below the 50 % target
# point, to show the latency of the whole chain when the cores are not full.
E2E_LOW_SHARE = 0.2


class Bench:
    """One run: the broker, the settings of each part, the results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.broker = EmbeddedBroker()
        self.run_id = time.strftime("%H%M%S")
        self.logs = RESULTS / "logs"
        self.results: dict[str, Any] = {}
        self._runs = 0

    def next_run(self) -> str:
        """A run name no other load of this run uses: message ids stay unique."""
        self._runs += 1
        return f"{self._runs:02d}{self.run_id}"

    def env(self, prefix: str, **extra: str) -> dict[str, str]:
        """The environment of a child process on this run's broker."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX")
        }
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.broker.bootstrap_servers,
            TOPIC_PREFIX=f"bench-{self.run_id}-{prefix}.",
            LOG_FORMAT="json",
            **extra,
        )
        return env

    async def topics(self, prefix: str) -> None:
        """Create every topic under a prefix before anything produces."""
        env = self.env(prefix)
        await ensure_topics(
            load_settings(
                kafka_bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
                topic_prefix=env["TOPIC_PREFIX"],
            )
        )

    async def worker(self, prefix: str, *argv: str) -> dict[str, Any]:
        """Run ``python -m bench.<part>``; its stderr is our progress."""
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            *argv,
            env=self.env(prefix),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate()
        lines = out.decode().strip().splitlines()
        if process.returncode != 0 or not lines:
            msg = f"{argv[0]} failed with exit status {process.returncode}"
            raise RuntimeError(msg)
        result: dict[str, Any] = orjson.loads(lines[-1])
        return result

    @contextlib.asynccontextmanager
    async def server(
        self, name: str, prefix: str, argv: list[str], ready_url: str | None
    ) -> AsyncIterator[None]:
        """A server process for the duration of the block, logs to a file."""
        log = (self.logs / f"{name}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            *argv, env=self.env(prefix), cwd=ROOT, stdout=log, stderr=log
        )
        try:
            if ready_url is not None:
                await _wait_ready(ready_url, process)
            yield
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            log.close()

    async def load(
        self, url: str, rates: list[float], label: str, *extra: str
    ) -> list[dict[str, Any]]:
        """The load generator's steps against ``url``."""
        result = await self.worker(
            "load",
            "bench.load",
            "--url",
            url,
            "--rates",
            ",".join(f"{r:.1f}" for r in rates),
            "--seconds",
            str(self.args.step_seconds),
            "--run",
            self.next_run(),
            "--label",
            label,
            *extra,
        )
        steps: list[dict[str, Any]] = result["steps"]
        return steps

    # ---- the parts -------------------------------------------------------

    async def raw(self) -> None:
        progress("raw producer ceiling")
        await self.topics("raw")
        result = await self.worker(
            "raw", "bench.raw", "--seconds", str(self.args.raw_seconds)
        )
        self.results["raw"] = {
            k: result[k] for k in ("events", "seconds", "events_per_s")
        }

    def ramp(self, share: float) -> list[float]:
        """Offered bodies/s: from ``share`` of the raw rate, rising."""
        raw = self.results["raw"]["events_per_s"]
        start = max(10.0, raw * share / bodies.EVENTS_PER_BODY)
        return [start * RAMP_FACTOR**i for i in range(RAMP_STEPS)]

    async def ingress(self) -> None:
        progress("ingress: rising load until saturation")
        await self.topics("ingest")
        port = free_port()
        url = f"http://127.0.0.1:{port}/callbacks/messaging"
        argv = [CLI, "ingest", "--no-auth", "--port", str(port)]
        ready = f"http://127.0.0.1:{port}/readyz"
        async with self.server("ingest", "ingest", argv, ready):
            steps = await self.load(
                url, self.ramp(1 / 25), "ingress", "--until-saturated"
            )
            saturation = max(st["achieved_events_per_s"] for st in steps)
            half = saturation / 2
            progress(f"ingress: saturated at {saturation:.0f} events/s; 50 % step")
            window_start = time.time()
            (half_step,) = await self.load(
                url,
                [half / bodies.EVENTS_PER_BODY],
                "ingress-50%",
                "--seconds",
                str(self.args.half_seconds),
            )
        handled = _handler_times(self.logs / "ingest.log", window_start, time.time())
        half_step["server_p50_ms"] = percentile(handled, 50)
        half_step["server_p99_ms"] = percentile(handled, 99)
        self.results.update(
            ingest_steps=steps,
            ingest_half_step=half_step,
            half_load_events_per_s=half,
            ingest_saturation=saturation,
            ingest_p50_ms=half_step["p50_ms"],
        )

    async def naive(self) -> None:
        progress("naive endpoint: rising load until saturation")
        await self.topics("naive")
        port = free_port()
        url = f"http://127.0.0.1:{port}/callbacks/messaging"
        argv = [PYTHON, "-m", "bench.naive", "--port", str(port)]
        async with self.server("naive", "naive", argv, None):
            await _wait_port(port)
            # It saturates far sooner: start lower to see its curve.
            steps = await self.load(
                url, self.ramp(1 / 100), "naive", "--until-saturated"
            )
        self.results["naive_steps"] = steps
        self.results["naive_saturation"] = max(
            st["achieved_events_per_s"] for st in steps
        )

    async def processors(self) -> None:
        count = self.args.events
        progress(f"processors: pre-filling the events topic with {count} events")
        await self.topics("proc")
        fill = await self.worker(
            "proc", "bench.raw", "--count", str(count), "--run", self.next_run()
        )
        ends = orjson.dumps(fill["ends"]).decode()
        rates: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for name in PROCESSORS:
            progress(f"processor {name}: joining its group, then draining")
            log = str(self.logs / f"drain-{name}.log")
            result = await self.worker(
                "proc", "bench.drain", name, "--ends", ends, "--log", log
            )
            rates[name] = result["events_per_s"]
            cpu[name] = result["cpu_us_per_event"]
            progress(f"processor {name}: {rates[name]:.0f} input events/s")
        self.results["processors"] = rates
        self.results["processors_cpu_us"] = cpu
        self.results["proc_ends"] = fill["ends"]

    async def faust(self) -> None:
        count = self.args.faust_events
        progress(f"faust peer: draining {count} of the same events")
        try:
            result = await self.worker(
                "proc", "bench.faust_peer", "--expected", str(count)
            )
        except RuntimeError as exc:
            result = {"error": str(exc)}
        if "error" in result:
            progress(f"faust peer failed: {result['error']}")
        else:
            progress(f"faust peer: {result['events_per_s']:.0f} input events/s")
        self.results["faust"] = result

    async def restore(self) -> None:
        progress(f"dedup restore of {self.args.entries} entries")
        await self.topics("restore")
        result = await self.worker(
            "restore", "bench.restore", "--entries", str(self.args.entries)
        )
        progress(
            f"restore: {result['entries_per_s']:.0f} entries/s, "
            f"{result['bytes_per_entry']:.1f} bytes/entry"
        )
        self.results["restore"] = result

    async def end_to_end(self) -> None:
        progress("end to end: ingress and the three processors, 50 % load")
        await self.topics("e2e")
        port = free_port()
        url = f"http://127.0.0.1:{port}/callbacks/messaging"
        ingest = [CLI, "ingest", "--no-auth", "--port", str(port)]
        ready = f"http://127.0.0.1:{port}/readyz"
        env = self.env("e2e")
        outputs = [
            env["TOPIC_PREFIX"] + t for t in (INBOUND_TOPIC, DELIVERY_TOPIC, MMS_TOPIC)
        ]
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(
                self.server("e2e-ingest", "e2e", ingest, ready)
            )
            for name in PROCESSORS:
                argv = [CLI, "process", name, "--port", str(free_port())]
                await stack.enter_async_context(
                    self.server(f"e2e-{name}", "e2e", argv, None)
                )
            seen = await stack.enter_async_context(
                _arrivals(self.broker.bootstrap_servers, outputs)
            )
            warm = RESULTS / "e2e-warm-ids.json"
            await self.load(
                url, [20.0], "e2e-warm-up", "--seconds", "1", "--ids", str(warm)
            )
            await _wait_seen(seen, set(orjson.loads(warm.read_bytes())), 60)
            progress("end to end: processors are running; measuring")
            saturation = self.results["ingest_saturation"]
            low = await self._e2e_step(url, seen, "e2e-20%", E2E_LOW_SHARE * saturation)
            half = await self._e2e_step(url, seen, "e2e-50%", saturation / 2)
        self.results["e2e"] = half
        self.results["e2e_low"] = low

    async def _e2e_step(
        self, url: str, seen: dict[str, float], label: str, events_per_s: float
    ) -> dict[str, Any]:
        """One load step with the ids recorded, matched on the outputs."""
        ids = RESULTS / f"{label}-ids.json"
        (step,) = await self.load(
            url,
            [events_per_s / bodies.EVENTS_PER_BODY],
            label,
            "--seconds",
            str(self.args.half_seconds),
            "--ids",
            str(ids),
        )
        sent: dict[str, float] = orjson.loads(ids.read_bytes())
        await _wait_seen(seen, set(sent), 30, fail=False)
        latencies = [(seen[i] - t) * 1000 for i, t in sent.items() if i in seen]
        result = {
            "offered_events_per_s": events_per_s,
            "expected": len(sent),
            "matched": len(latencies),
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "ingest_step": step,
        }
        progress(
            f"{label}: POST to output p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms ({len(latencies)} of {len(sent)} seen)"
        )
        return result

    # ---- the run -----------------------------------------------------------

    def summary(self) -> dict[str, float | None]:
        r = self.results
        faust = r.get("faust", {})
        procs = r.get("processors", {})
        return {
            "raw_events_per_s": r["raw"]["events_per_s"],
            "ingest_events_per_s": r.get("ingest_saturation"),
            "naive_events_per_s": r.get("naive_saturation"),
            "ingest_p99_ms": r.get("ingest_half_step", {}).get("p99_ms"),
            "processor_events_per_s": min(procs.values()) if procs else None,
            "faust_events_per_s": faust.get("events_per_s"),
            "restore_entries_per_s": r.get("restore", {}).get("entries_per_s"),
            "dedup_bytes_per_entry": r.get("restore", {}).get("bytes_per_entry"),
            "e2e_p99_ms": r.get("e2e", {}).get("p99_ms"),
        }

    async def main(self) -> str:
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        started = time.monotonic()
        self.results["machine"] = {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        await asyncio.to_thread(self.broker.start)
        try:
            parts = (
                ("raw", self.raw),
                ("ingress", self.ingress),
                ("naive", self.naive),
                ("processors", self.processors),
                ("faust", self.faust),
                ("restore", self.restore),
                ("end to end", self.end_to_end),
            )
            for name, part in parts:
                before = self._cpu()
                await part()
                self.results.setdefault("cpu", {})[name] = _cpu_use(before, self._cpu())
        finally:
            await asyncio.to_thread(self.broker.stop)
        self.results["seconds"] = time.monotonic() - started
        self.results["summary"] = self.summary()
        return self.write()

    def _cpu(self) -> tuple[float, float, float]:
        """Wall time, busy CPU seconds of the machine, and of this run's processes.

        Children count once they have been waited for, which every part does
        before it returns; the broker runs throughout and is read directly.
        """
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(f) for f in fields[:8]
        )
        busy = (user + nice + system + irq + softirq + steal) / ticks
        own = os.times()
        ours = own.user + own.system + own.children_user + own.children_system
        if self.broker.pid is not None:
            stat = Path(f"/proc/{self.broker.pid}/stat").read_text()
            utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
            ours += (int(utime) + int(stime)) / ticks
        return time.monotonic(), busy, ours

    def write(self) -> str:
        text = report.table(self.results)
        (RESULTS / "latest.json").write_bytes(
            orjson.dumps(
                self.results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
            )
        )
        (RESULTS / "latest.md").write_text(text + "\n")
        report.plot(self.results, RESULTS / "latency.png")
        progress(f"done in {self.results['seconds']:.0f} s; results in {RESULTS}")
        return text


def _handler_times(log: Path, start: float, end: float) -> list[float]:
    """The ingress's own ``durationMs`` of the callbacks it answered in a window.

    From its JSON log lines: the time inside the handler, without the load
    generator's lateness, the client or aiohttp's queue before the handler.
    """
    times = []
    for line in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            entry = orjson.loads(line)
            if (
                not isinstance(entry, dict)
                or entry.get("message") != "callback answered"
            ):
                continue
            stamp = datetime.fromisoformat(entry["time"]).timestamp()
            if start <= stamp <= end:
                times.append(float(entry["durationMs"]))
    return times


def _cpu_use(
    before: tuple[float, float, float], after: tuple[float, float, float]
) -> dict[str, float]:
    """Cores used during a part: by the bench, and by anything else."""
    seconds = after[0] - before[0]
    busy = after[1] - before[1]
    ours = after[2] - before[2]
    return {
        "seconds": seconds,
        "bench_cores": ours / seconds,
        "other_cores": max(busy - ours, 0.0) / seconds,
    }


async def _wait_ready(url: str, process: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                msg = f"server exited with status {process.returncode}"
                raise RuntimeError(msg)
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    msg = f"{url} not ready in {timeout_s} s"
    raise RuntimeError(msg)


async def _wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.1)
    msg = f"nothing listens on port {port}"
    raise RuntimeError(msg)


@contextlib.asynccontextmanager
async def _arrivals(
    bootstrap: str, topics: list[str]
) -> AsyncIterator[dict[str, float]]:
    """Wall-clock arrival time of each eventId on the output topics."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    seen: dict[str, float] = {}

    async def collect() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for record in records:
                    for key, value in record.headers or ():
                        if key == "event-id":
                            seen.setdefault(bytes(value).decode(), now)

    try:
        tps = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await consumer.stop()


async def _wait_seen(
    seen: dict[str, float], wanted: set[str], timeout_s: float, *, fail: bool = True
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if wanted.issubset(seen.keys()):
            return
        await asyncio.sleep(0.2)
    if fail:
        msg = f"{len(wanted - seen.keys())} events never reached an output topic"
        raise RuntimeError(msg)


def main() -> None:
    """Entry point of ``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--raw-seconds", type=float, default=8.0)
    parser.add_argument("--step-seconds", type=float, default=4.0)
    parser.add_argument("--half-seconds", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--faust-events", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    bench = Bench(args)
    text = asyncio.run(bench.main())
    print(text)
    print(report.summary_line(bench.results["summary"]), flush=True)


if __name__ == "__main__":
    main()
