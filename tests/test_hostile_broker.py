"""Hostile input against a real broker and the real producer.

An item larger than a record used to get its whole body a 503 for as long as
Bandwidth retried (the producer refuses it before sending). Now it is on
Kafka by reference and the rest of its body is published.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import encode_basic_auth, web
from aiohttp.test_utils import TestClient, TestServer

from ingest import CALLBACK_PATH, create_app
from ingest.blobs import CHUNK_COUNT_HEADER, CHUNK_INDEX_HEADER, reassemble
from message_events.replay import replay_dead_letters
from message_events.settings import (
    DLQ_BLOBS_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    Settings,
)
from message_events.topics import ensure_topics
from schemas.outputs import RawRef
from tests.kafka_helpers import fixture_items, read_topic

pytestmark = pytest.mark.broker

AUTH = {"Authorization": encode_basic_auth("bw", "pw")}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default limits (4 MiB bodies, 1 MiB records), this test's topics."""
    built = make_settings(callback_username="bw", callback_password="pw")
    await ensure_topics(built)
    return built


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    """The ingress with its own producer on the test broker."""
    client: Client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    yield client
    await client.close()


def _big_item() -> bytes:
    """A real inbound item whose text makes it 1.5 MB: past one record."""
    item: dict[str, Any] = orjson.loads(fixture_items("incoming_single_sms.json")[0])
    item["message"]["id"] = "1772470000000b1gb1gb1gb1gb1gb"
    item["message"]["text"] = "🚀 " * 300_000
    return orjson.dumps(item)


async def test_item_larger_than_a_record_is_on_kafka_by_reference(
    settings: Settings, client: Client
) -> None:
    """200; the small items on the events topic, the big one's letter on the
    DLQ and its bytes, reassembled, identical to what was posted; replay
    counts it as too large and republishes nothing."""
    assert settings.kafka_bootstrap_servers is not None
    bootstrap = settings.kafka_bootstrap_servers
    small = fixture_items("tricky_mixed_batch.json")[:2]
    big = _big_item()
    assert settings.producer_max_request_bytes < len(big) < settings.max_body_bytes
    body = b"[" + small[0] + b",\n" + big + b",\n" + small[1] + b"]"

    response = await client.post(
        CALLBACK_PATH, data=io.BytesIO(body), headers={**AUTH, "X-Request-Id": "big"}
    )

    assert response.status == 200
    assert orjson.loads(await response.read()) == {
        "accepted": 2,
        "deadLettered": 1,
        "requestId": "big",
    }
    events = await read_topic(bootstrap, settings.topic(EVENTS_TOPIC), expected=2)
    assert sorted(r.value for r in events) == sorted(small)
    (letter,) = await read_topic(bootstrap, settings.topic(DLQ_TOPIC), expected=1)
    value = orjson.loads(letter.value)
    ref = RawRef.model_validate(value["rawRef"])
    assert value["raw"] is None
    assert ref.topic == settings.topic(DLQ_BLOBS_TOPIC)
    chunks = await read_topic(bootstrap, ref.topic, expected=ref.chunks)
    assert {c.key for c in chunks} == {ref.sha256.encode()}
    parts = [
        (
            int(dict(c.headers)[CHUNK_INDEX_HEADER]),
            int(dict(c.headers)[CHUNK_COUNT_HEADER]),
            c.value,
        )
        for c in chunks
    ]
    assert reassemble(ref, parts) == big

    report = await replay_dead_letters(settings, dry_run=True, progress=False)

    assert report.as_dict() == {
        "read": 1,
        "replayed": 0,
        "stillInvalid": 0,
        "unreadable": 0,
        "tooLarge": 1,
    }


async def test_lone_surrogate_dead_letter_is_readable_by_replay(
    settings: Settings, client: Client
) -> None:
    """The dead letter of a lone-surrogate item keeps its text; replay reads
    it and finds it still invalid (not unreadable)."""
    assert settings.kafka_bootstrap_servers is not None
    item = fixture_items("incoming_single_sms.json")[0]
    broken = item.replace(b'"text": "', b'"text": "\\ud800', 1)
    assert broken != item

    response = await client.post(CALLBACK_PATH, data=b"[" + broken + b"]", headers=AUTH)

    assert response.status == 200
    (letter,) = await read_topic(
        settings.kafka_bootstrap_servers, settings.topic(DLQ_TOPIC), expected=1
    )
    assert orjson.loads(letter.value)["raw"].encode() == broken
    report = await replay_dead_letters(settings, dry_run=True, progress=False)
    assert report.as_dict() == {
        "read": 1,
        "replayed": 0,
        "stillInvalid": 1,
        "unreadable": 0,
        "tooLarge": 0,
    }
