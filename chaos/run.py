"""
``make chaos``: every fault scenario, one after another, under continuous load.

One dedicated embedded broker behind a ``FaultProxy``; ``message-events
ingest`` and the three ``message-events process`` commands as child processes;
a callback load that never stops until the end and retries each body until it
gets a 200. The scenarios, in order: broker cut off, broker frozen (SIGSTOP),
proxy stalled, a storm of SIGKILLs on processors, instances joining and
leaving, a stuck instance (SIGSTOP), a slow instance (batches longer than its
max poll interval), clients hanging up mid-body, SIGTERM to the ingress and to
a processor. Then the load drains, every topic is read, and a table says what
was sent, acknowledged, found, lost and duplicated. The last line printed is
one JSON object; the exit status is 1 when anything was lost or duplicated or
another check failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson

from chaos.broker import ProxiedBroker
from chaos.load import (
    CUTS,
    Answer,
    CallbackLoad,
    Event,
    EventFactory,
    Ledger,
    Report,
    audit,
    body_of,
    post_half,
)
from chaos.processes import Child, restored_before_handled, settings_env
from message_events.broker import free_port
from message_events.settings import PROCESSORS, Settings, load_settings
from message_events.topics import ensure_topics

DEADLINE_MS = 1500
ANSWER_SLACK_S = 1.0
SESSION_TIMEOUT_MS = 6000
SLOW_MAX_POLL_INTERVAL_MS = 3000
USER, PASSWORD = "chaos", "chaos-secret"
AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
RUN_LIMIT_S = 900.0
# The only failure a client may see around a SIGTERM: its connection was
# refused, so its request never reached the stopping ingress.
NEVER_SENT = {"", "ClientConnectorError"}


@dataclasses.dataclass
class Options:
    """How long and how hard the run is."""

    seed: int
    away_s: float = 8.0
    storm_s: float = 50.0
    min_kills: int = 10
    concurrency: int = 3
    pace_s: float = 0.05


@dataclasses.dataclass
class Phase:
    """One scenario's outcome for the table."""

    name: str
    seconds: float
    notes: str


class Cluster:
    """The broker, the ingress and the processors of one run, as processes."""

    def __init__(self, broker: ProxiedBroker, settings: Settings, logs: Path):
        self.broker = broker
        self.settings = settings
        self.logs = logs
        self.env = settings_env(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.children: list[Child] = []
        self.processor_children: list[Child] = []
        self.processors: dict[str, list[Child]] = {name: [] for name in PROCESSORS}
        self.ingress = self._child("ingest", ["ingest", "--port", str(self.port)])

    def _child(
        self,
        label: str,
        args: list[str],
        module: str = "message_events.cli",
        **extra_env: str,
    ) -> Child:
        path = self.logs / f"{len(self.children):03d}-{label}.log"
        child = Child(args, {**self.env, **extra_env}, path, module=module)
        self.children.append(child)
        return child

    def start(self) -> None:
        """Start the ingress, one instance of each processor and a second delivery."""
        self.ingress.start()
        for name in (*PROCESSORS, "delivery"):
            self.start_processor(name)

    def restart_ingress(self) -> None:
        """A new ingress process on the run's port."""
        self.ingress = self._child("ingest", ["ingest", "--port", str(self.port)])
        self.ingress.start()

    def start_processor(self, name: str, *, slow: bool = False) -> Child:
        """One more instance of a processor; ``slow`` ones come from ``chaos.slow``."""
        if slow:
            child = self._child(
                f"{name}-slow",
                [name],
                module="chaos.slow",
                CONSUMER_MAX_POLL_INTERVAL_MS=str(SLOW_MAX_POLL_INTERVAL_MS),
            )
        else:
            child = self._child(name, ["process", name, "--port", "0"])
        child.start()
        self.processors[name].append(child)
        self.processor_children.append(child)
        return child

    def running(self, name: str) -> list[Child]:
        """The instances of a processor still alive."""
        alive = [c for c in self.processors[name] if c.returncode is None]
        self.processors[name] = alive
        return alive

    async def ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the ingress answers /readyz with 200."""
        async with aiohttp.ClientSession() as session:
            await until(
                lambda: _status_is(session, self.url + "/readyz", 200),
                timeout_s,
                "the ingress ready",
            )

    async def stop(self) -> None:
        """SIGTERM every child still running, then make sure they are gone."""
        for child in self.children:
            child.signal(signal.SIGCONT)
            child.terminate()
        for child in self.children:
            with contextlib.suppress(Exception):
                await child.wait(15)
            await child.stop()


async def until(
    check: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str = ""
) -> float:
    """Poll ``check`` until it holds; return the seconds it took.

    Raises at the deadline.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    msg = f"timed out after {timeout_s} s waiting for {what or 'a condition'}"
    raise TimeoutError(msg)


async def _status_is(session: aiohttp.ClientSession, url: str, status: int) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == status
    except aiohttp.ClientError:
        return False


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


class Run:
    """One chaos run: the scenarios in order, then the audit."""

    def __init__(
        self, cluster: Cluster, options: Options, ledger: Ledger, load: CallbackLoad
    ) -> None:
        self.cluster = cluster
        self.options = options
        self.ledger = ledger
        self.load = load
        self.random = random.Random(options.seed)
        self.phases: list[Phase] = []
        self.failures: list[str] = []
        self.kills = 0
        self.half_ids: set[str] = set()
        self.half_retried: set[str] = set()

    def check(self, ok: bool, failure: str) -> None:
        """Note a failed check; the run goes on and exits 1 at the end."""
        if not ok:
            self.failures.append(failure)

    async def phase(self, name: str, scenario: Callable[[], Awaitable[str]]) -> None:
        """Run one scenario and note how long it took and what it saw."""
        started = time.monotonic()
        print(f"-- {name}", flush=True)
        try:
            notes = await scenario()
        except (TimeoutError, AssertionError, OSError) as exc:
            notes = f"FAILED: {type(exc).__name__}: {exc}"
            self.failures.append(f"{name}: {exc}")
        self.phases.append(Phase(name, time.monotonic() - started, notes))
        print(f"   {notes}", flush=True)

    def acked(self) -> int:
        return len(self.ledger.acknowledged)

    async def warm_up(self) -> str:
        await until(lambda: self.acked() >= 200, 90, "first acknowledgements")
        return f"{self.acked()} events acknowledged"

    async def broker_away(self, fault: str) -> str:
        broker = self.cluster.broker
        url = self.cluster.url
        away = time.monotonic()
        if fault == "cut":
            await broker.cut()
        elif fault == "sigstop":
            broker.freeze()
        else:
            broker.proxy.stall()
        async with aiohttp.ClientSession() as session:
            not_ready_s = await until(
                lambda: _status_is(session, url + "/readyz", 503), 10, "/readyz 503"
            )
            await until(lambda: time.monotonic() - away >= self.options.away_s, 60)
            back = time.monotonic()
            if fault == "cut":
                await broker.restore()
            elif fault == "sigstop":
                broker.thaw()
            else:
                broker.proxy.resume()
            first_200_s = await until(
                lambda: any(
                    a.started > back and a.status == 200 for a in self.ledger.answers
                ),
                60,
                "a 200 after the broker came back",
            )
            ready_s = await until(
                lambda: _status_is(session, url + "/readyz", 200), 60, "/readyz 200"
            )
        during = [a for a in self.ledger.answers if away < a.started and a.ended < back]
        wrong = [a for a in during if a.status != 503]
        limit_s = DEADLINE_MS / 1000 + ANSWER_SLACK_S
        slow = [a for a in during if a.ended - a.started > limit_s]
        self.check(not wrong, f"{fault}: {len(wrong)} answers other than 503")
        self.check(not slow, f"{fault}: {len(slow)} answers slower than {limit_s} s")
        return (
            f"{len(during)} answers while away, all 503: {not wrong}, "
            f"slowest {max((a.ended - a.started for a in during), default=0):.2f} s; "
            f"/readyz 503 after {not_ready_s:.1f} s; first 200 {first_200_s:.1f} s "
            f"and /readyz 200 {ready_s:.1f} s after the broker came back"
        )

    async def kill_storm(self) -> str:
        cluster = self.cluster
        started = time.monotonic()
        kills = 0
        while (
            time.monotonic() - started < self.options.storm_s
            or kills < self.options.min_kills
        ):
            await asyncio.sleep(self.random.uniform(1.0, 4.0))
            name = self.random.choice(PROCESSORS)
            victims = cluster.running(name)
            if not victims:
                continue
            victim = self.random.choice(victims)
            victim.kill()
            await victim.wait()
            cluster.running(name)
            cluster.start_processor(name)
            kills += 1
        self.kills += kills
        for name in PROCESSORS:
            await self._progress(name)
        return f"{kills} processes SIGKILLed and restarted at random points"

    async def _progress(self, name: str, timeout_s: float = 90) -> None:
        """Wait until an instance of ``name`` handles a batch it had not before."""
        counts = {id(c): c.count("batch handled") for c in self.cluster.running(name)}
        await until(
            lambda: any(
                c.count("batch handled") > counts.get(id(c), 0)
                for c in self.cluster.running(name)
            ),
            timeout_s,
            f"{name} handling batches",
        )

    async def rebalance(self) -> str:
        cluster = self.cluster
        joined = [cluster.start_processor(name) for name in PROCESSORS]
        for child in joined:
            await child.wait_for_log("batch handled", timeout_s=90)
        leaving = [cluster.running(n)[0] for n in ("inbound", "mms")]
        for child in leaving:
            child.terminate()
        codes = [await child.wait() for child in leaving]
        self.check(codes == [0, 0], f"rebalance: leaving members exited {codes}")
        for name in ("inbound", "mms"):
            await self._progress(name)
        sizes = {n: len(cluster.running(n)) for n in PROCESSORS}
        return f"3 instances joined, 2 left (exit {codes}); instances now {sizes}"

    async def stuck(self) -> str:
        victim = self.cluster.running("delivery")[0]
        # Frozen between batches. One frozen while it publishes a batch still
        # lands that batch on resuming, which nothing short of broker-side
        # fencing prevents; the load pauses the second that takes.
        self.load.pause()
        try:
            await victim.wait_idle()
            victim.signal(signal.SIGSTOP)
        finally:
            self.load.resume()
        stuck_s = SESSION_TIMEOUT_MS / 1000 + 4
        await asyncio.sleep(stuck_s)  # the fault's length, not a wait for anything
        victim.signal(signal.SIGCONT)
        await self._progress("delivery")
        resumed = victim.count("partitions assigned")
        return (
            f"a delivery instance frozen between batches for {stuck_s:.0f} s, "
            f"then resumed (assigned partitions {resumed} times in all)"
        )

    async def slow(self) -> str:
        child = self.cluster.start_processor("mms", slow=True)
        await child.wait_for_log("batch handled", count=8, timeout_s=120)
        child.terminate()
        code = await child.wait()
        assigned = child.count("partitions assigned")
        self.check(code == 0, f"slow: exited {code}")
        self.check(assigned <= 2, f"slow: assigned {assigned} times (kicked in a loop)")
        return (
            f"mms instance at 150 ms per event, max poll interval "
            f"{SLOW_MAX_POLL_INTERVAL_MS} ms: {child.count('batch handled')} batches, "
            f"assigned partitions {assigned} time(s), exit {code}"
        )

    async def half_bodies(self) -> str:
        factory = EventFactory()
        cut_events: list[list[Event]] = []
        headers = {**AUTH, "Content-Type": "application/json"}
        for i in range(24):
            events = factory.batch(self.random.randint(1, 3))
            cut_events.append(events)
            await post_half(self.cluster.port, body_of(events), headers, CUTS[i % 3])
        self.half_ids = {e.event_id for events in cut_events for e in events}
        retried = cut_events[::2]
        async with aiohttp.ClientSession() as session:
            for events in retried:
                started = time.monotonic()
                url = self.cluster.url + "/callbacks/messaging"
                async with session.post(
                    url, data=body_of(events), headers=headers
                ) as r:
                    await r.read()
                    status = r.status
                answer = Answer(started, time.monotonic(), status, len(events))
                self.ledger.record(events, answer)
                self.check(status == 200, f"half bodies: a complete retry got {status}")
        self.half_retried = {e.event_id for events in retried for e in events}
        return (
            f"{len(cut_events)} bodies cut off mid-way, "
            f"{len(retried)} posted again whole"
        )

    async def sigterm_ingress(self) -> str:
        old = self.cluster.ingress
        proxy = self.cluster.broker.proxy
        # The broker's answers are held for a moment, so that requests are
        # surely in flight when the ingress is told to stop.
        proxy.stall()
        try:
            await until(lambda: self.load.in_flight >= 2, 10, "requests in flight")
            stopped = time.monotonic()
            old.terminate()
            await until(lambda: _refused(self.cluster.port), 10, "listener closed")
        finally:
            proxy.resume()
        code = await old.wait(30)
        drained_s = time.monotonic() - stopped
        self.cluster.restart_ingress()
        await self.cluster.ready()
        back_s = time.monotonic() - stopped
        in_flight = [a for a in self.ledger.answers if a.started < stopped < a.ended]
        cut_off = [a for a in self.ledger.answers if a.error not in NEVER_SENT]
        self.check(code == 0, f"SIGTERM ingest: exit {code}")
        self.check(not cut_off, f"SIGTERM ingest: {len(cut_off)} requests cut off")
        return (
            f"exit {code} after {drained_s:.1f} s; {len(in_flight)} requests in flight "
            f"answered {sorted({a.status for a in in_flight})}; none cut off: "
            f"{not cut_off}; new ingress ready {back_s:.1f} s after SIGTERM"
        )

    async def sigterm_processor(self) -> str:
        victim = self.cluster.running("delivery")[0]
        victim.terminate()
        code = await victim.wait(30)
        stopped = any(
            line.get("message") == "processor stopped" for line in victim.logs()
        )
        self.check(code == 0 and stopped, f"SIGTERM process: exit {code}")
        self.cluster.start_processor("delivery")
        await self._progress("delivery")
        return f"a delivery instance stopped (exit {code}), a new one took over"


async def run(options: Options) -> int:
    """The whole run; returns the exit status."""
    logs = Path(tempfile.mkdtemp(prefix="message-events-chaos-"))
    started = time.monotonic()
    ledger = Ledger()
    print(f"chaos run, seed {options.seed}, logs in {logs}", flush=True)
    async with ProxiedBroker() as broker:
        settings = load_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            topic_prefix=f"chaos-{options.seed}.",
            events_partitions=6,
            callback_username=USER,
            callback_password=PASSWORD,
            http_host="127.0.0.1",
            publish_deadline_ms=DEADLINE_MS,
            consumer_session_timeout_ms=SESSION_TIMEOUT_MS,
            consumer_heartbeat_interval_ms=500,
            consumer_max_poll_records=100,
        )
        await ensure_topics(settings)
        cluster = Cluster(broker, settings, logs)
        load = CallbackLoad(
            cluster.url,
            EventFactory(),
            ledger,
            headers=AUTH,
            concurrency=options.concurrency,
            pace_s=options.pace_s,
            seed=options.seed,
        )
        chaos = Run(cluster, options, ledger, load)
        try:
            cluster.start()
            await cluster.ready()
            await load.start()
            await _scenarios(chaos)
            print("-- draining the load and reading every topic", flush=True)
            await load.drain(timeout_s=120)
            chaos.check(load.pending == 0, f"{load.pending} bodies never acknowledged")
            report = await audit(
                settings,
                ledger.sent,
                ledger.acknowledged,
                timeout_s=180,
                settle_s=5,
                longest_503_s=ledger.longest_unavailable_s(),
                statuses=ledger.statuses(),
            )
            cut_off = chaos.half_ids - chaos.half_retried
            half = len(cut_off & report.events_ids)
            chaos.check(half == 0, f"{half} events of cut-off bodies were published")
            _restore_checks(chaos, cluster)
        finally:
            await load.close()
            await cluster.stop()
    _print_table(chaos, report, half, time.monotonic() - started, logs)
    failed = bool(report.lost or report.duplicated or chaos.failures)
    if not failed:
        shutil.rmtree(logs, ignore_errors=True)
    print(orjson.dumps(report.summary()).decode(), flush=True)
    return 1 if failed else 0


async def _scenarios(chaos: Run) -> None:
    await chaos.phase("warm-up", chaos.warm_up)
    for fault in ("cut", "sigstop", "stall"):

        async def away(fault: str = fault) -> str:
            return await chaos.broker_away(fault)

        await chaos.phase(f"broker away ({fault})", away)
    await chaos.phase("processor kill storm", chaos.kill_storm)
    await chaos.phase("instances join and leave", chaos.rebalance)
    await chaos.phase("stuck instance (SIGSTOP)", chaos.stuck)
    await chaos.phase("slow instance", chaos.slow)
    await chaos.phase("clients hang up mid-body", chaos.half_bodies)
    await chaos.phase("SIGTERM ingest", chaos.sigterm_ingress)
    await chaos.phase("SIGTERM processor", chaos.sigterm_processor)


def _restore_checks(chaos: Run, cluster: Cluster) -> None:
    for child in cluster.processor_children:
        ordered, _ = restored_before_handled(child.logs())
        chaos.check(ordered, f"{child.log_path.name}: a batch before its restore")


def _print_table(
    chaos: Run, report: Report, half: int, elapsed_s: float, logs: Path
) -> None:
    processes = chaos.cluster.processor_children
    print()
    print(f"{'phase':<28} {'seconds':>8}  notes")
    for phase in chaos.phases:
        print(f"{phase.name:<28} {phase.seconds:>8.1f}  {phase.notes}")
    statuses = ", ".join(
        f"{status or 'none'}: {n}" for status, n in sorted(report.statuses.items())
    )
    rows: list[tuple[str, object]] = [
        ("events sent", report.sent),
        ("acknowledged (200)", report.acknowledged),
    ]
    rows += [
        (f"acknowledged found in {topic}", f"{n} of {report.expected[topic]}")
        for topic, n in report.found.items()
    ]
    rows += [
        ("lost", report.lost),
        ("duplicated", report.duplicated),
    ]
    rows += [
        (f"duplicated in {topic}", n)
        for topic, n in report.duplicated_by_topic.items()
        if n
    ]
    rows += [
        ("longest run of 503 answers (first to last)", f"{report.longest_503_s:.1f} s"),
        ("answers by status", statuses),
        ("processes SIGKILLed", chaos.kills),
        ("processor processes run", len(processes)),
        ("events of cut-off bodies published", half),
        ("run time", f"{elapsed_s:.0f} s"),
    ]
    print()
    for label, value in rows:
        print(f"{label:<56} {value}")
    for failure in chaos.failures:
        print(f"FAILED: {failure}")
    if report.lost_ids:
        print(f"lost event ids (first 5): {report.lost_ids[:5]}")
    if report.duplicated_ids:
        print(f"duplicated event ids (first 5): {report.duplicated_ids[:5]}")
    if report.lost or report.duplicated or chaos.failures:
        print(f"logs kept in {logs}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m chaos``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument(
        "--storm-seconds", type=float, default=50.0, help="length of the kill storm"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    options = Options(seed=seed, storm_s=args.storm_seconds)

    async def bounded() -> int:
        async with asyncio.timeout(RUN_LIMIT_S):
            return await run(options)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        print(f"chaos run did not finish within {RUN_LIMIT_S:.0f} s")
        unknown = {"sent": None, "acknowledged": None, "lost": None, "duplicated": None}
        print(orjson.dumps(unknown).decode())
        return 1
