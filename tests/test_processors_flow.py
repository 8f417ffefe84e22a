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
from tests.kafka_helpers import (
    FIXTURES,
    fixture_items,
    publish_events,
    read_topic,
    values,
)

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


async def test_every_fixture_reaches_the_right_outputs(
    settings: Settings, processors: dict[str, Processor]
) -> None:
    """All fixture bodies, in file order: the exact records each output gets."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    items = [
        raw
        for path in sorted(FIXTURES.glob("*.json"))
        for raw in fixture_items(path.name)
    ]
    await publish_events(bootstrap, settings.topic(EVENTS_TOPIC), items)

    inbound = await read_topic(
        bootstrap, settings.topic(INBOUND_TOPIC), expected=10, settle_s=3
    )
    delivery = await read_topic(
        bootstrap, settings.topic(DELIVERY_TOPIC), expected=18, settle_s=1
    )
    mms = await read_topic(bootstrap, settings.topic(MMS_TOPIC), expected=4, settle_s=1)

    assert sorted(v["type"] for v in values(inbound)) == sorted(
        ["message-received"] * 8
        + ["suggestion-response", "requested-location-response"]
    )
    conversations = {v["messageId"]: v["conversationId"] for v in values(inbound)}
    assert len(conversations) == 10
    group_copies = [
        v for v in values(inbound) if v["messageId"].startswith("1772468416")
    ]
    assert len({v["conversationId"] for v in group_copies}) == 1
    statuses = {
        r.key.decode(): v for r, v in zip(delivery, values(delivery), strict=True)
    }
    assert len(statuses) == 18, "one record per key: no duplicate, no late sent"
    assert (
        statuses["1772471122310mm5d3l1v3r3d0001/+15555550151"]["status"] == "delivered"
    )
    assert statuses["1772528700412rbmr34dm3ss4g301/+15555550153"]["status"] == "read"
    failures = {
        k.split("/")[0][-16:]: (v["errorCode"], v["retryAdvice"])
        for k, v in statuses.items()
        if v["status"] == "failed"
    }
    assert failures == {
        "f41l3dm3ss4g3001": (4406, "no"),
        "gr0upf41l3d00001": (4434, "no"),
        "b4tchf41l000004z": (4770, "no"),
        "n0ll4bl3f13lds02": (4785, "later"),
        "t0llfr339902x001": (9902, "no"),
    }
    group = [k for k in statuses if k.startswith("1772483000777gr0upst4tus00001/")]
    assert sorted(group) == [
        "1772483000777gr0upst4tus00001/+15555550150",
        "1772483000777gr0upst4tus00001/+15555550151",
    ]
    progress = [
        (r.key.decode(), v["status"]) for r, v in zip(mms, values(mms), strict=True)
    ]
    assert sorted(progress) == sorted(
        [
            ("1772471122310mm5d3l1v3r3d0001/+15555550151", "queued"),
            ("1772471122310mm5d3l1v3r3d0001/+15555550151", "sending"),
            ("1772474399900b4tchmm5000001az/+15555550151", "sending"),
            ("1772483700000out0f0rd3rm5g001/+15555550150", "sending"),
        ]
    )
