"""The ingress against a real broker: what lands on the topics, and outages."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import encode_basic_auth, web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from ingest import CALLBACK_PATH, create_app
from message_events.broker import EmbeddedBroker, free_port
from message_events.settings import DLQ_TOPIC, EVENTS_TOPIC, Settings
from message_events.topics import declared_topics, ensure_topics
from schemas.events import CallbackEvent
from schemas.identity import event_identity

pytestmark = pytest.mark.broker

FIXTURE_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FIXTURES = {path.stem: path.read_bytes() for path in sorted(FIXTURE_DIR.glob("*.json"))}
ONE_SMS = FIXTURES["incoming_single_sms"]
CREDENTIALS = {"callback_username": "bw", "callback_password": "pw:ü"}
AUTH = {"Authorization": encode_basic_auth("bw", "pw:ü")}
RECEIVED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
READ_TIMEOUT_S = 20.0

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[Settings], Awaitable[Client]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Build a test client around an ingress app with its own producer."""
    clients: list[Client] = []

    async def build(settings: Settings) -> Client:
        client: Client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


@pytest.fixture
async def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Settings for this test's topics, which exist already."""
    built = make_settings(**CREDENTIALS)
    await ensure_topics(built)
    return built


async def read_topic(settings: Settings, name: str, *, expected: int) -> list[Any]:
    """Every record of a topic, read until ``expected`` and the end, or 20 s."""
    topic = settings.topic(name)
    (spec,) = [s for s in declared_topics(settings) if s.name == topic]
    partitions = [TopicPartition(topic, p) for p in range(spec.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            batches = await consumer.getmany(*partitions, timeout_ms=200)
            records += [r for batch in batches.values() for r in batch]
            if len(records) >= expected and await _at_end(consumer, partitions):
                break
        return records
    finally:
        await consumer.stop()


async def _at_end(consumer: Any, partitions: list[TopicPartition]) -> bool:
    # The embedded broker can report an end offset behind what was already
    # read, hence >= rather than ==.
    ends = await consumer.end_offsets(partitions)
    positions = [await consumer.position(tp) for tp in partitions]
    return all(pos >= ends[tp] for pos, tp in zip(positions, partitions, strict=True))


def expected_items(body: bytes) -> list[bytes]:
    """Each item's bytes in the body, found without the ingress's parser.

    An item ends at the first closing brace where the text since its opening
    brace parses, as JSON, to that item.
    """
    slices: list[bytes] = []
    position = 0
    for value in orjson.loads(body):
        start = body.index(b"{", position)
        end = start
        while True:
            end = body.index(b"}", end) + 1
            try:
                if orjson.loads(body[start:end]) == value:
                    break
            except orjson.JSONDecodeError:
                continue
        slices.append(body[start:end])
        position = end
    return slices


def _headers(record: Any) -> dict[str, bytes]:
    return {key: value for key, value in record.headers}


class TestPublished:
    @pytest.mark.parametrize("name", sorted(FIXTURES))
    async def test_fixture_items_arrive_as_received(
        self, settings: Settings, make_client: MakeClient, name: str
    ) -> None:
        """Every fixture item is one record: key message.id, value its bytes."""
        client = await make_client(settings)
        body = FIXTURES[name]
        items = expected_items(body)
        headers = {
            **AUTH,
            "X-Request-Id": f"fixture-{name}",
            "Content-Type": "application/json; charset=utf-8",
        }

        response = await client.post(CALLBACK_PATH, data=body, headers=headers)

        assert response.status == 200
        assert orjson.loads(await response.read()) == {
            "accepted": len(items),
            "deadLettered": 0,
            "requestId": f"fixture-{name}",
        }
        records = await read_topic(settings, EVENTS_TOPIC, expected=len(items))
        expected = [(orjson.loads(i)["message"]["id"].encode(), i) for i in items]
        assert sorted((r.key, r.value) for r in records) == sorted(expected)
        for record in records:
            event = CallbackEvent.model_validate_json(record.value)
            headers_ = _headers(record)
            assert headers_.keys() == {
                "event-id",
                "event-type",
                "received-at",
                "request-id",
            }
            assert headers_["event-id"] == event_identity(event).event_id.encode()
            assert headers_["event-type"] == event.type.encode()
            assert headers_["request-id"] == f"fixture-{name}".encode()
            assert RECEIVED_AT.fullmatch(headers_["received-at"].decode())
        assert await read_topic(settings, DLQ_TOPIC, expected=0) == []

    async def test_single_object(
        self, settings: Settings, make_client: MakeClient
    ) -> None:
        """A bare object body is one record whose value is the trimmed body."""
        client = await make_client(settings)
        (item,) = expected_items(ONE_SMS)

        response = await client.post(
            CALLBACK_PATH, data=b"\n  " + item + b"\n", headers=AUTH
        )

        assert response.status == 200
        records = await read_topic(settings, EVENTS_TOPIC, expected=1)
        assert [r.value for r in records] == [item]

    async def test_dead_letters_and_the_rest(
        self, settings: Settings, make_client: MakeClient
    ) -> None:
        """Unroutable items go to the DLQ as received; the others are published."""
        client = await make_client(settings)
        good = (
            b'{"type":"message-expired","time":"2026-03-02T18:00:00Z",'
            b'"to":"+15555550150","message":{"id":"m-ok","to":["+15555550150"]}}'
        )
        no_id = (
            b'{ "type" : "message-sent", "time":"2026-03-02T18:00:00Z",\n'
            b' "to":"+15555550150","message":{"to":["+15555550150"]}}'
        )
        to_string = (
            b'{"type":"message-sent","time":"2026-03-02T18:00:00Z",'
            b'"to":"+15555550150","message":{"id":"m-3","to":"+15555550150"}}'
        )
        body = b"[\n" + no_id + b",\n  " + good + b" ,\t" + to_string + b"\n]"
        headers = {**AUTH, "X-Request-Id": "dlq-1"}

        response = await client.post(CALLBACK_PATH, data=body, headers=headers)

        assert response.status == 200
        assert orjson.loads(await response.read()) == {
            "accepted": 1,
            "deadLettered": 2,
            "requestId": "dlq-1",
        }
        events = await read_topic(settings, EVENTS_TOPIC, expected=1)
        assert [(r.key, r.value) for r in events] == [(b"m-ok", good)]
        assert _headers(events[0])["event-type"] == b"message-expired"
        letters = await read_topic(settings, DLQ_TOPIC, expected=2)
        assert [r.key for r in letters] == [None, None]
        values = [orjson.loads(r.value) for r in letters]
        received_at = _headers(events[0])["received-at"].decode()
        assert values == [
            {
                "raw": no_id.decode(),
                "error": "invalid callback item: message.id: missing",
                "requestId": "dlq-1",
                "receivedAt": received_at,
            },
            {
                "raw": to_string.decode(),
                "error": "invalid callback item: message.to: list_type",
                "requestId": "dlq-1",
                "receivedAt": received_at,
            },
        ]

    async def test_refused_bodies_publish_nothing(
        self, make_settings: Callable[..., Settings], make_client: MakeClient
    ) -> None:
        """401, 400 and 413 answers leave both topics empty."""
        settings = make_settings(max_body_bytes=2048, **CREDENTIALS)
        await ensure_topics(settings)
        client = await make_client(settings)
        good = ONE_SMS
        oversize = good + b" " * settings.max_body_bytes

        statuses = [
            (await client.post(CALLBACK_PATH, data=good)).status,
            (await client.post(CALLBACK_PATH, data=b"nope", headers=AUTH)).status,
            (await client.post(CALLBACK_PATH, data=b"7", headers=AUTH)).status,
            (await client.post(CALLBACK_PATH, data=b"[\xfe]", headers=AUTH)).status,
            (await client.post(CALLBACK_PATH, data=oversize, headers=AUTH)).status,
        ]

        assert statuses == [401, 400, 400, 400, 413]
        assert await read_topic(settings, EVENTS_TOPIC, expected=0) == []
        assert await read_topic(settings, DLQ_TOPIC, expected=0) == []

    async def test_readyz_with_broker(
        self, settings: Settings, make_client: MakeClient
    ) -> None:
        """The ingress is ready while the broker answers."""
        client = await make_client(settings)

        response = await client.get("/readyz")

        assert response.status == 200


class TestBrokerOutage:
    async def test_broker_unreachable_from_the_start(
        self, make_settings: Callable[..., Settings], make_client: MakeClient
    ) -> None:
        """With no broker the app still starts, and callbacks get 503 in time."""
        settings = make_settings(
            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
            publish_deadline_ms=1000,
            retry_after_seconds=3,
            **CREDENTIALS,
        )
        client = await make_client(settings)
        before = REGISTRY.get_sample_value(
            "message_events_http_requests_total", {"status": "503"}
        )
        started = time.monotonic()

        response = await client.post(CALLBACK_PATH, data=ONE_SMS, headers=AUTH)

        assert response.status == 503
        assert time.monotonic() - started < 1.0 + 1.5
        assert response.headers["Retry-After"] == "3"
        assert orjson.loads(await response.read()) == {
            "error": "event store unavailable, retry later",
            "requestId": response.headers["X-Request-Id"],
        }
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
        after = REGISTRY.get_sample_value(
            "message_events_http_requests_total", {"status": "503"}
        )
        assert (after or 0) - (before or 0) == 1

    async def test_broker_lost_after_start(
        self, make_settings: Callable[..., Settings], make_client: MakeClient
    ) -> None:
        """When the broker goes away, callbacks get 503 within the deadline."""
        broker = EmbeddedBroker()
        await asyncio.to_thread(broker.start)
        try:
            settings = make_settings(
                kafka_bootstrap_servers=broker.bootstrap_servers,
                publish_deadline_ms=1000,
                **CREDENTIALS,
            )
            await ensure_topics(settings)
            client = await make_client(settings)
            body = ONE_SMS
            first = await client.post(CALLBACK_PATH, data=body, headers=AUTH)

            # A crash, not a polite stop: Tansu waits for its clients on SIGTERM.
            pid = broker.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(broker.stop)
            started = time.monotonic()
            second = await client.post(CALLBACK_PATH, data=body, headers=AUTH)
            elapsed = time.monotonic() - started
            ready = await client.get("/readyz")
        finally:
            await asyncio.to_thread(broker.stop)

        assert (first.status, second.status, ready.status) == (200, 503, 503)
        assert elapsed < 1.0 + 1.5
