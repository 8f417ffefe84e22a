"""
Processors under faults while events flow: kills, joins and leaves, slow and
frozen instances, SIGTERM.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from chaos.load import EventFactory, Feeder, Report, audit, event_id_header
from chaos.processes import Child, restored_before_handled, settings_env
from message_events.settings import EVENTS_TOPIC, Settings
from message_events.topics import ensure_topics
from processors import Processor
from tests.kafka_helpers import wait_until

KILL_ROUNDS = 3
INSTANCES = 4  # per round: 12 kills
SLOW_EVENTS = 60
SLOW_EVENT_S = 0.15


def _assert_exactly_once(report: Report) -> None:
    assert report.acknowledged > 0
    assert (report.lost_ids, report.duplicated_ids) == ([], [])
    assert (report.lost, report.duplicated) == (0, 0)


async def test_repeated_sigkill_loses_and_duplicates_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """``process delivery`` SIGKILLed 12 times at random points while events flow.

    Each round starts four instances and kills all of them, one by one, each
    at a random point of its batches (in some rounds one right after the group
    handed it partitions, mid-restore). Every restarted process restores its
    partitions' dedup state before it handles a batch of them; in the end
    every event is out exactly once.
    """
    seed = random.randrange(2**32)
    chooser = random.Random(seed)
    settings = make_settings(consumer_max_poll_records=25)
    await ensure_topics(settings)
    env = settings_env(settings)
    feeder = Feeder(settings, EventFactory(["delivery"]), per_second=120)
    children: list[Child] = []

    def spawn(name: str) -> Child:
        child = Child(["process", "delivery", "--port", "0"], env, tmp_path / name)
        children.append(child)
        child.start()
        return child

    await feeder.start()
    try:
        for round_ in range(KILL_ROUNDS):
            members = [spawn(f"r{round_}-{i}.log") for i in range(INSTANCES)]
            chooser.shuffle(members)
            if round_ % 2 == 1:
                await members[0].wait_for_log("partitions assigned")
                members[0].kill()
            # The group notices a death only after the session timeout; until
            # then the others go on, and die in the middle of some batch.
            for member in members[round_ % 2 :]:
                batches = chooser.randint(1, 3)
                await member.wait_for_log("batch handled", count=batches)
                member.kill()
            for member in members:
                await member.wait()
        last = spawn("last.log")
        await last.wait_for_log("batch handled")
        await feeder.stop()
        report = await audit(
            settings,
            feeder.published,
            set(feeder.published),
            kinds=["delivery"],
            timeout_s=90,
        )
        last.terminate()
        assert await last.wait() == 0
    finally:
        await feeder.stop()
        for child in children:
            await child.stop()

    _assert_exactly_once(report)
    for i, child in enumerate(children):
        lines = child.logs()
        ordered, entries = restored_before_handled(lines)
        where = f"{child.log_path.name}, seed {seed}"
        assert ordered, f"a batch was handled before its restore ({where})"
        restarted = i >= INSTANCES
        if restarted and any(line.get("message") == "batch handled" for line in lines):
            assert entries > 0, f"nothing restored ({where})"


async def test_instances_join_and_leave_under_load(
    make_settings: Callable[..., Settings],
) -> None:
    """Three instances of one processor join and leave while events flow."""
    settings = make_settings(consumer_max_poll_records=25)
    await ensure_topics(settings)
    feeder = Feeder(settings, EventFactory(["delivery"]), per_second=150)
    a, b, c = (Processor(settings, "delivery") for _ in range(3))
    everyone = set(range(settings.events_partitions))
    await feeder.start()
    try:
        await a.start()
        await wait_until(lambda: a.assigned == everyone, timeout_s=60, what="a")
        await b.start()
        await wait_until(
            lambda: bool(b.assigned) and a.assigned | b.assigned == everyone,
            timeout_s=60,
            what="b joined",
        )
        await c.start()
        await wait_until(
            lambda: (
                bool(c.assigned) and a.assigned | b.assigned | c.assigned == everyone
            ),
            timeout_s=60,
            what="c joined",
        )
        await b.stop()
        await wait_until(
            lambda: a.assigned | c.assigned == everyone, timeout_s=60, what="b left"
        )
        await a.stop()
        await wait_until(lambda: c.assigned == everyone, timeout_s=60, what="a left")
        await feeder.stop()
        report = await audit(
            settings, feeder.published, set(feeder.published), kinds=["delivery"]
        )
        assert c.running
    finally:
        await feeder.stop()
        for processor in (a, b, c):
            await processor.stop()

    _assert_exactly_once(report)


async def test_batches_slower_than_max_poll_interval_keep_the_member(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Handling slower than ``max_poll_interval`` per batch keeps the member.

    Each event takes 0.15 s to handle, so a polled batch of 25 takes 3.75 s
    against a 3 s max poll interval. The member is never thrown out of its
    group (once out, the same batch would throw it out again after each
    rejoin); every event comes out once.
    """
    settings = make_settings(
        consumer_max_poll_records=25, consumer_max_poll_interval_ms=3000
    )
    await ensure_topics(settings)
    feeder = Feeder(settings, EventFactory(["delivery"]))
    processor = Processor(settings, "delivery")
    handle = processor.handler.handle

    def slow_handle(*args: Any) -> Any:
        time.sleep(SLOW_EVENT_S)  # CPU-bound work blocks the loop too
        return handle(*args)

    monkeypatch.setattr(processor.handler, "handle", slow_handle)
    caplog.set_level(logging.INFO, logger="processors.runner")
    await feeder.start(flowing=False)
    await feeder.publish(feeder.factory.batch(SLOW_EVENTS))
    await feeder.stop()
    await processor.start()
    try:
        report = await audit(
            settings,
            feeder.published,
            set(feeder.published),
            kinds=["delivery"],
            timeout_s=SLOW_EVENTS * SLOW_EVENT_S + 40,
        )
        assert processor.running
    finally:
        await processor.stop()

    assignments = [r for r in caplog.records if r.message == "partitions assigned"]
    assert len(assignments) == 1
    _assert_exactly_once(report)


async def _committed(settings: Settings) -> dict[int, int]:
    """The delivery group's committed input offset of each partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id("delivery"),
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        topic = settings.topic(EVENTS_TOPIC)
        return {
            p: await consumer.committed(TopicPartition(topic, p)) or 0
            for p in range(settings.events_partitions)
        }
    finally:
        await consumer.stop()


async def _ids_below(settings: Settings, ends: dict[int, int]) -> set[str]:
    """The event ids of the input records below ``ends``, per partition."""
    topic = settings.topic(EVENTS_TOPIC)
    tps = {TopicPartition(topic, p): end for p, end in ends.items() if end > 0}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    ids: set[str] = set()
    await consumer.start()
    try:
        consumer.assign(list(tps))
        await consumer.seek_to_beginning(*tps)

        async def done() -> bool:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                ids.update(
                    event_id
                    for r in records
                    if r.offset < tps[tp] and (event_id := event_id_header(r))
                )
            return all([await consumer.position(tp) >= end for tp, end in tps.items()])

        await wait_until(done, timeout_s=30, what="input read up to the commits")
    finally:
        await consumer.stop()
    return ids


async def test_sigterm_commits_what_was_published(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """SIGTERM to ``process delivery`` mid-load: it finishes and commits its batch.

    Right after it exits, the outputs are exactly the events below the
    committed offsets: nothing published is left uncommitted (it would be
    redone) and nothing committed is missing from the outputs (lost).
    """
    settings = make_settings(consumer_max_poll_records=25)
    await ensure_topics(settings)
    env = settings_env(settings)
    feeder = Feeder(settings, EventFactory(["delivery"]), per_second=150)
    first = Child(["process", "delivery", "--port", "0"], env, tmp_path / "a.log")
    second = Child(["process", "delivery", "--port", "0"], env, tmp_path / "b.log")
    await feeder.start()
    try:
        first.start()
        await first.wait_for_log("batch handled", count=5)
        first.terminate()
        assert await first.wait() == 0
        committed = await _committed(settings)
        handled = await _ids_below(settings, committed)
        outputs = await audit(settings, {}, set(), kinds=["delivery"], settle_s=1)

        second.start()
        await second.wait_for_log("batch handled")
        await feeder.stop()
        report = await audit(
            settings, feeder.published, set(feeder.published), kinds=["delivery"]
        )
        second.terminate()
        assert await second.wait() == 0
    finally:
        await feeder.stop()
        for child in (first, second):
            await child.stop()

    assert handled
    assert outputs.output_ids == handled
    assert outputs.duplicated == 0
    _assert_exactly_once(report)


async def test_frozen_instances_publish_nothing_stale_and_come_back(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Two instances; each in turn is frozen (SIGSTOP) past its session timeout.

    The other takes its partitions over and goes on. The first is frozen
    between batches: when it resumes, its next fetch brings records of
    partitions it lost and its state misses what the other did meanwhile; it
    must publish none of them. The second is frozen while it restores the
    partitions the first one's return gave it: when it resumes, the other
    keeps writing to those output partitions, and its restore must still end
    so it rejoins. Every event is out once. (An instance frozen in the middle
    of publishing a batch still lands that batch when it resumes, which
    nothing short of broker-side fencing can stop; not tested here.)
    """
    settings = make_settings(consumer_max_poll_records=25)
    await ensure_topics(settings)
    env = settings_env(settings)
    feeder = Feeder(settings, EventFactory(["delivery"]), per_second=150)
    a, b = (
        Child(["process", "delivery", "--port", "0"], env, tmp_path / f"{n}.log")
        for n in "ab"
    )
    everyone = list(range(settings.events_partitions))
    await feeder.start()
    try:
        a.start()
        b.start()
        for child in (a, b):
            await child.wait_for_log("batch handled")

        feeder.pause()
        await a.wait_idle()
        await _frozen_until_taken_over(a, b, everyone, on_freeze=feeder.resume)
        b_assigned = b.count("partitions assigned")
        a_assigned = a.count("partitions assigned")
        a.signal(signal.SIGCONT)
        await a.wait_for_log("partitions assigned", count=a_assigned + 1)

        # a's return hands b new partitions: freeze b while it restores them.
        await b.wait_for_log("partitions assigned", count=b_assigned + 1)
        await _frozen_until_taken_over(b, a, everyone)
        b_assigned = b.count("partitions assigned")
        b.signal(signal.SIGCONT)
        await b.wait_for_log("partitions assigned", count=b_assigned + 1)

        await feeder.stop()
        report = await audit(
            settings, feeder.published, set(feeder.published), kinds=["delivery"]
        )
    finally:
        await feeder.stop()
        for child in (a, b):
            child.signal(signal.SIGCONT)
            await child.stop()

    _assert_exactly_once(report)


async def _frozen_until_taken_over(
    stuck: Child,
    other: Child,
    everyone: list[int],
    on_freeze: Callable[[], None] | None = None,
) -> None:
    """SIGSTOP ``stuck``; return once ``other`` owns everything and goes on."""
    takeovers = _takeovers(other, everyone)
    stuck.signal(signal.SIGSTOP)
    if on_freeze is not None:
        on_freeze()
    await wait_until(
        lambda: _takeovers(other, everyone) > takeovers,
        timeout_s=60,
        what="takeover",
    )
    await other.wait_for_log("batch handled", count=other.count("batch handled") + 3)


def _takeovers(child: Child, everyone: list[int]) -> int:
    """How often ``child`` was assigned every partition."""
    return sum(
        1
        for line in child.logs()
        if line.get("message") == "partitions assigned"
        and line["partitions"] == everyone
    )
