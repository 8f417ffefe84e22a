"""Replaying dead letters on a real broker."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaProducer

from message_events.replay import replay_dead_letters
from message_events.settings import DLQ_TOPIC, EVENTS_TOPIC, Settings
from message_events.topics import ensure_topics
from schemas.outputs import DeadLetter
from tests.kafka_helpers import fixture_items, read_topic


async def test_replay_publishes_routable_letters_once(
    make_settings: Callable[..., Settings],
) -> None:
    """Fixed items go back to the events topic; broken ones stay; reruns resume."""
    settings = make_settings()
    await ensure_topics(settings)
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    good = fixture_items("message_failed.json")[0].decode()
    letters = [
        DeadLetter(
            raw=good,
            error="was refused",
            requestId="r1",
            receivedAt="2026-03-02T18:00:00.000Z",
        ),
        DeadLetter(
            raw="[1, 2]",
            error="not an object",
            requestId="r2",
            receivedAt="2026-03-02T18:00:01.000Z",
        ),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(settings.topic(DLQ_TOPIC), letter.to_json())
        await producer.send_and_wait(settings.topic(DLQ_TOPIC), b"not json")
    finally:
        await producer.stop()

    dry = await replay_dead_letters(settings, dry_run=True, progress=False)
    first = await replay_dead_letters(settings, dry_run=False, progress=False)
    second = await replay_dead_letters(settings, dry_run=False, progress=False)
    events = await read_topic(
        bootstrap, settings.topic(EVENTS_TOPIC), expected=1, settle_s=1
    )

    assert dry.as_dict() == {
        "read": 3,
        "replayed": 1,
        "stillInvalid": 1,
        "unreadable": 1,
        "tooLarge": 0,
    }
    assert first.as_dict() == dry.as_dict()
    assert second.as_dict() == {
        "read": 0,
        "replayed": 0,
        "stillInvalid": 0,
        "unreadable": 0,
        "tooLarge": 0,
    }
    (event,) = events
    assert event.value == good.encode()
    assert event.key == orjson.loads(good)["message"]["id"].encode()
    headers = dict(event.headers)
    assert headers["request-id"] == b"r1"
    assert headers["received-at"] == b"2026-03-02T18:00:00.000Z"
    assert headers["replayed-from"].startswith(
        settings.topic(DLQ_TOPIC).encode() + b":0:"
    )


async def test_replay_limit_leaves_the_rest_for_the_next_run(
    make_settings: Callable[..., Settings],
) -> None:
    """``--limit`` marks as done only the letters it read."""
    settings = make_settings()
    await ensure_topics(settings)
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    good = fixture_items("message_failed.json")[0].decode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(5):
            letter = DeadLetter(
                raw=good,
                error="x",
                requestId=f"r{i}",
                receivedAt="2026-03-02T18:00:00Z",
            )
            await producer.send_and_wait(settings.topic(DLQ_TOPIC), letter.to_json())
    finally:
        await producer.stop()

    first = await replay_dead_letters(settings, dry_run=False, limit=2, progress=False)
    rest = await replay_dead_letters(settings, dry_run=False, progress=False)

    assert (first.read, first.replayed) == (2, 2)
    assert (rest.read, rest.replayed) == (3, 3)
