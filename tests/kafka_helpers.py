"""Reading and writing test topics with deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.events import CallbackEvent
from schemas.identity import event_identity

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def fixture_items(name: str) -> list[bytes]:
    """The items of a fixture body, each as its JSON text as written."""
    text = (FIXTURES / name).read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    items: list[bytes] = []
    index = text.index("[") + 1
    while True:
        while text[index] in " \r\n\t,":
            index += 1
        if text[index] == "]":
            return items
        _, end = decoder.raw_decode(text, index)
        items.append(text[index:end].encode())
        index = end


async def publish_events(bootstrap: str, topic: str, items: list[bytes]) -> None:
    """Publish items the way the ingress does: key message id, acks=all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = []
        for raw in items:
            event = CallbackEvent.model_validate_json(raw)
            headers = [
                ("event-id", event_identity(event).event_id.encode()),
                ("event-type", event.type.encode()),
            ]
            futures.append(
                await producer.send(
                    topic, value=raw, key=event.message.id.encode(), headers=headers
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expected: int,
    timeout_s: float = 30.0,
    settle_s: float = 0.0,
) -> list[Any]:
    """Read a topic from the start until ``expected`` records or the deadline.

    With ``settle_s`` it keeps reading that long after reaching ``expected``,
    so a test can see records that should not be there.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = time.monotonic() + timeout_s
        while not partitions and time.monotonic() < deadline:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} not found"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
            if len(records) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
        return records
    finally:
        await consumer.stop()


def values(records: list[Any]) -> list[dict[str, Any]]:
    """The JSON values of records."""
    return [orjson.loads(r.value) for r in records]


async def wait_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout_s: float = 30.0,
    what: str = "condition",
) -> None:
    """Poll ``check`` until it holds or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    msg = f"timed out waiting for {what}"
    raise AssertionError(msg)


def synthetic_statuses(count: int, *, seed: str = "s") -> list[bytes]:
    """``count`` distinct message-delivered items, each for its own message."""
    template = json.loads(fixture_items("message_delivered_sms.json")[0])
    items = []
    for i in range(count):
        item = json.loads(json.dumps(template))
        item["message"]["id"] = f"1772470000000{seed}{i:015d}"[:29]
        items.append(orjson.dumps(item))
    return items
