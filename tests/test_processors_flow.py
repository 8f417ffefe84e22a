"""Processors on a real broker: fixtures in, the right outputs out, once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from message_events.settings import (
    DELIVERY_TOPIC,
    EVENTS_TOPIC,
    INBOUND_TOPIC,
    MMS_TOPIC,
    Settings,
)
from message_events.topics import ensure_topics
from processors import Processor
from tests.kafka_helpers import fixture_items, publish_events, read_topic, values

MIXED = "tricky_mixed_batch.json"


@pytest.fixture
async def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings with this test's topics created."""
    built = make_settings()
    await ensure_topics(built)
    return built


@pytest.fixture
async def processors(settings: Settings) -> AsyncIterator[dict[str, Processor]]:
    """One started instance of each processor."""
    started = {
        name: Processor(settings, name) for name in ("inbound", "delivery", "mms")
    }
    for processor in started.values():
        await processor.start()
    yield started
    for processor in started.values():
        await processor.stop()


async def test_mixed_batch_reaches_each_output_once(
    settings: Settings, processors: dict[str, Processor]
) -> None:
    """The mixed fixture, posted twice, yields one record per unique event."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    items = fixture_items(MIXED)
    await publish_events(bootstrap, settings.topic(EVENTS_TOPIC), items + items)

    inbound = await read_topic(
        bootstrap, settings.topic(INBOUND_TOPIC), expected=1, settle_s=3
    )
    delivery = await read_topic(
        bootstrap, settings.topic(DELIVERY_TOPIC), expected=3, settle_s=1
    )
    mms = await read_topic(bootstrap, settings.topic(MMS_TOPIC), expected=1, settle_s=1)

    assert [r.key for r in inbound] == [b"1772474401002b4tchinb0und003z"]
    (message,) = values(inbound)
    assert message["text"] == "STOP"
    assert message["from"] == "+15555550152"
    assert message["owner"] == "+15555550101"
    assert message["to"] == ["+15555550101"]
    statuses: dict[bytes, Any] = {
        r.key: v for r, v in zip(delivery, values(delivery), strict=True)
    }
    assert sorted(statuses) == [
        b"1772474395555b4tchf41l000004z/+15555550153",
        b"1772474398120b4tchsms0000002z/+15555550150",
        b"1772474399900b4tchmm5000001az/+15555550151",
    ]
    failed = statuses[b"1772474395555b4tchf41l000004z/+15555550153"]
    assert failed["status"] == "failed"
    assert failed["errorCode"] == 4770
    assert failed["errorCategory"] == "carrier-client"
    assert failed["retryAdvice"] == "no"
    assert [v["status"] for v in values(mms)] == ["sending"]
    assert [r.key for r in mms] == [b"1772474399900b4tchmm5000001az/+15555550151"]
