"""Processors under restarts, crashes and a second instance, on a real broker."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from message_events.settings import DELIVERY_TOPIC, EVENTS_TOPIC, Settings
from message_events.topics import ensure_topics
from processors import Processor
from tests.kafka_helpers import (
    publish_events,
    read_topic,
    synthetic_statuses,
    wait_until,
)


@pytest.fixture
async def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings with this test's topics created."""
    built = make_settings()
    await ensure_topics(built)
    return built


def _keys(records: list[Any]) -> collections.Counter[bytes]:
    return collections.Counter(r.key for r in records)


async def _outputs(
    settings: Settings, expected: int, settle_s: float = 2.0
) -> list[Any]:
    assert settings.kafka_bootstrap_servers is not None
    return await read_topic(
        settings.kafka_bootstrap_servers,
        settings.topic(DELIVERY_TOPIC),
        expected=expected,
        timeout_s=60,
        settle_s=settle_s,
    )


def _assert_exactly_once(records: list[Any], items: int) -> None:
    counts = _keys(records)
    duplicated = {k: n for k, n in counts.items() if n > 1}
    assert duplicated == {}
    assert len(counts) == items


async def test_crash_between_outputs_and_entries_duplicates_nothing(
    settings: Settings,
) -> None:
    """Outputs that landed without their dedup entries are found on restore."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    items = synthetic_statuses(40)
    first = Processor(settings, "delivery")

    async def crash(entries: dict[int, list[tuple[bytes, bytes]]]) -> None:
        msg = "simulated crash after the outputs were acknowledged"
        raise RuntimeError(msg)

    first._write_entries = crash  # type: ignore[method-assign]
    await first.start()
    await publish_events(bootstrap, settings.topic(EVENTS_TOPIC), items)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await asyncio.wait_for(first.wait(), 60)
    landed = await _outputs(settings, expected=1, settle_s=0.5)
    assert 0 < len(landed) <= len(items)
    await first.stop()

    second = Processor(settings, "delivery")
    await second.start()
    try:
        records = await _outputs(settings, expected=len(items))
    finally:
        await second.stop()

    _assert_exactly_once(records, len(items))


async def test_redelivered_batch_after_restart_publishes_nothing(
    settings: Settings,
) -> None:
    """A restarted instance restores dedup state and skips what it handled."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    items = synthetic_statuses(30, seed="r")
    topic = settings.topic(EVENTS_TOPIC)
    first = Processor(settings, "delivery")
    await first.start()
    await publish_events(bootstrap, topic, items)
    await _outputs(settings, expected=len(items), settle_s=0)
    await first.stop()

    # The same events again, as Bandwidth retries would deliver them.
    await publish_events(bootstrap, topic, items)
    second = Processor(settings, "delivery")
    await second.start()
    try:
        await wait_until(
            lambda: (
                sum(len(s) for p in second.assigned if (s := second.state(p)))
                >= 2 * len(items)
            ),
            what="restored state",
        )
        records = await _outputs(settings, expected=len(items), settle_s=4)
    finally:
        await second.stop()

    _assert_exactly_once(records, len(items))


async def test_two_instances_split_partitions_and_take_over(settings: Settings) -> None:
    """Two members share the partitions; when one leaves the other takes all."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    topic = settings.topic(EVENTS_TOPIC)
    a, b = Processor(settings, "delivery"), Processor(settings, "delivery")
    await a.start()
    await b.start()
    try:
        await wait_until(
            lambda: bool(a.assigned) and bool(b.assigned),
            timeout_s=60,
            what="both members assigned",
        )
        assert a.assigned.isdisjoint(b.assigned)
        assert a.assigned | b.assigned == set(range(settings.events_partitions))

        first = synthetic_statuses(40, seed="a")
        await publish_events(bootstrap, topic, first)
        await _outputs(settings, expected=len(first), settle_s=0)

        await b.stop()
        await wait_until(
            lambda: a.assigned == set(range(settings.events_partitions)),
            timeout_s=60,
            what="takeover",
        )
        second = synthetic_statuses(40, seed="b")
        await publish_events(bootstrap, topic, first + second)
        records = await _outputs(
            settings, expected=len(first) + len(second), settle_s=3
        )
    finally:
        await a.stop()
        await b.stop()

    _assert_exactly_once(records, len(first) + len(second))


async def test_sigkilled_process_restarts_without_loss_or_duplicate(
    settings: Settings,
) -> None:
    """``message-events process delivery`` killed mid-stream, then restarted."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        TOPIC_PREFIX=settings.topic_prefix,
        EVENTS_PARTITIONS=str(settings.events_partitions),
        CONSUMER_SESSION_TIMEOUT_MS="6000",
        CONSUMER_HEARTBEAT_INTERVAL_MS="500",
        CONSUMER_MAX_POLL_RECORDS="20",
        LOG_FORMAT="json",
    )
    command = [
        sys.executable,
        "-m",
        "message_events.cli",
        "process",
        "delivery",
        "--port",
        "0",
    ]
    items = synthetic_statuses(400, seed="k")

    victim = subprocess.Popen(  # noqa: ASYNC220
        command, env=env, stdout=subprocess.DEVNULL
    )
    try:
        await publish_events(bootstrap, settings.topic(EVENTS_TOPIC), items)
        await _outputs(settings, expected=50, settle_s=0)
    finally:
        victim.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.wait)

    survivor = subprocess.Popen(  # noqa: ASYNC220
        command, env=env, stdout=subprocess.DEVNULL
    )
    try:
        records = await _outputs(settings, expected=len(items), settle_s=3)
    finally:
        survivor.send_signal(signal.SIGTERM)
        await asyncio.to_thread(survivor.wait, 30)

    assert survivor.returncode == 0
    _assert_exactly_once(records, len(items))


async def test_record_the_handler_cannot_handle_does_not_stop_its_partition(
    settings: Settings,
) -> None:
    """An unexpected error is an anomaly for that record; the rest flows."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    items = synthetic_statuses(6, seed="x")
    poison = orjson.loads(items[2])["message"]["id"]
    processor = Processor(settings, "delivery")
    handle = processor.handler.handle

    def fragile(event: Any, *args: Any) -> Any:
        if event.message.id == poison:
            msg = "cannot handle this one"
            raise ZeroDivisionError(msg)
        return handle(event, *args)

    processor.handler.handle = fragile  # type: ignore[method-assign,assignment]
    await processor.start()
    try:
        await publish_events(bootstrap, settings.topic(EVENTS_TOPIC), items)
        records = await _outputs(settings, expected=5, settle_s=2)
        assert processor.running
    finally:
        await processor.stop()

    assert len(records) == 5
    assert poison.encode() not in {r.key.split(b"/")[0] for r in records}


async def test_failed_entries_leave_the_mark_where_it_was(settings: Settings) -> None:
    """The output mark moves only after the entries it vouches for landed."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    items = synthetic_statuses(10, seed="m")
    first = Processor(settings, "delivery")
    writes: list[set[bytes]] = []
    write_entries = first._write_entries

    async def entries_fail(entries: dict[int, list[tuple[bytes, bytes]]]) -> None:
        kinds = {key[:1] for pairs in entries.values() for key, _ in pairs}
        writes.append(kinds)
        if b"e" in kinds:
            msg = "entries lost"
            raise RuntimeError(msg)
        await write_entries(entries)

    first._write_entries = entries_fail  # type: ignore[method-assign]
    await first.start()
    await publish_events(bootstrap, settings.topic(EVENTS_TOPIC), items)
    with pytest.raises(RuntimeError, match="entries lost"):
        await asyncio.wait_for(first.wait(), 60)
    await first.stop()
    assert all(b"m" not in kinds for kinds in writes)

    second = Processor(settings, "delivery")
    await second.start()
    try:
        records = await _outputs(settings, expected=len(items))
    finally:
        await second.stop()

    _assert_exactly_once(records, len(items))
