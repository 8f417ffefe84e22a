"""HTTP behaviour of the ingress against a recording fake producer (no broker)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import orjson
import pytest
from aiohttp import ClientResponse, encode_basic_auth, web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from prometheus_client import REGISTRY

from ingest import CALLBACK_PATH, create_app
from message_events.errors import ConfigError
from message_events.settings import DLQ_TOPIC, EVENTS_TOPIC, Settings, load_settings
from schemas.events import CallbackEvent
from schemas.identity import event_identity

USER, PASSWORD = "bandwidth-in", "s3cret"
EXTRA_USER, EXTRA_PASSWORD = "bandwidth-out", "pa:ss:wörd ✓"
AUTH = {"Authorization": encode_basic_auth(USER, PASSWORD)}
MAX_BODY = 2048

Client = TestClient[web.Request, web.Application]


def _event(message_id: str = "m-1", **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "message-delivered",
        "time": "2026-03-02T18:00:00.744Z",
        "description": "Message delivered to handset.",
        "to": "+15555550150",
        "message": {
            "id": message_id,
            "direction": "out",
            "to": ["+15555550150"],
            "from": "+15555550100",
            "text": "secret words",
        },
    }
    event.update(overrides)
    return event


def _body(*items: object) -> bytes:
    return orjson.dumps(list(items))


class Sent(NamedTuple):
    topic: str
    value: bytes
    key: bytes | None
    headers: dict[str, bytes]


class FakeClient:
    """Stands in for the producer's cluster client in readiness probes."""

    def __init__(self) -> None:
        self.reachable = True

    async def fetch_all_metadata(self) -> None:
        if not self.reachable:
            msg = "no broker answers"
            raise KafkaConnectionError(msg)


class FakeProducer:
    """Records sends; every acknowledgement succeeds, fails or never comes."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.client = FakeClient()
        self.ack_error: Exception | None = None
        self.failing_topic: str | None = None  # None: ack_error on every topic
        self.send_error: Exception | None = None
        self.hold_acks = False
        self.flushes = 0

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(Sent(topic, value, key, dict(headers or [])))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ack_error is not None and self.failing_topic in (None, topic):
            future.set_exception(self.ack_error)
        elif not self.hold_acks:
            future.set_result(None)
        return future

    async def flush(self) -> None:
        self.flushes += 1


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": "127.0.0.1:9",
        "topic_prefix": "http-test.",
        "callback_username": USER,
        "callback_password": PASSWORD,
        "callback_extra_credentials": {EXTRA_USER: EXTRA_PASSWORD},
        "max_body_bytes": MAX_BODY,
        "publish_deadline_ms": 300,
        "retry_after_seconds": 7,
        "auth_realm": "bw-callbacks",
    }
    values.update(overrides)
    return load_settings(**values)


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def producer() -> FakeProducer:
    """A fresh recording producer."""
    return FakeProducer()


@pytest.fixture
async def make_client(producer: FakeProducer) -> AsyncIterator[MakeClient]:
    """Build a test client around an ingress app that uses the fake producer."""
    clients: list[Client] = []

    async def build(settings: Settings | None = None, **options: Any) -> Client:
        app = create_app(settings or _settings(), producer=producer, **options)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    """A client of an app with the default test settings."""
    return await make_client()


async def _json(response: ClientResponse) -> Any:
    return orjson.loads(await response.read())


async def _status_before_body(client: Client, headers: dict[str, str]) -> bytes:
    """Send only a request head announcing a large body; return the status line.

    An answer can only come back if the server decided without the body.
    """
    head = [f"POST {CALLBACK_PATH} HTTP/1.1", "Host: test", "Content-Length: 100000"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        async with asyncio.timeout(5):
            return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="missing"),
            pytest.param(
                {"Authorization": encode_basic_auth(USER, "wrong")}, id="wrong"
            ),
            pytest.param({"Authorization": "Basic %%%not-base64"}, id="malformed"),
            pytest.param({"Authorization": "Bearer abc"}, id="other-scheme"),
        ],
    )
    async def test_challenge(
        self, client: Client, producer: FakeProducer, headers: dict[str, str]
    ) -> None:
        """Without valid credentials: 401 with the Basic challenge, nothing sent."""
        response = await client.post(
            CALLBACK_PATH, data=_body(_event()), headers=headers
        )

        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == (
            'Basic realm="bw-callbacks", charset="UTF-8"'
        )
        body = await _json(response)
        assert body == {
            "error": "authentication required",
            "requestId": response.headers["X-Request-Id"],
        }
        assert producer.sent == []

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"not json", id="invalid-body"),
            pytest.param(b"[" + b" " * MAX_BODY + b"]", id="oversize-body"),
        ],
    )
    async def test_auth_is_checked_before_the_body(
        self, client: Client, body: bytes
    ) -> None:
        """A bad or huge body without credentials still gets the challenge."""
        response = await client.post(CALLBACK_PATH, data=body)

        assert response.status == 401

    async def test_challenge_comes_before_the_body(self, client: Client) -> None:
        """The 401 is sent without waiting for a byte of the body."""
        status = await _status_before_body(client, {})

        assert status == b"HTTP/1.1 401 Unauthorized\r\n"

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param(encode_basic_auth(USER, PASSWORD), id="main-pair"),
            pytest.param(encode_basic_auth(EXTRA_USER, EXTRA_PASSWORD), id="extra"),
            pytest.param(
                "Basic "
                + base64.b64encode(
                    b"bandwidth-out:pa:ss:w\xc3\xb6rd \xe2\x9c\x93"
                ).decode(),
                id="raw-utf8",
            ),
        ],
    )
    async def test_accepted_pairs(
        self, client: Client, producer: FakeProducer, header: str
    ) -> None:
        """Every configured pair works, colons and non-ASCII in passwords too."""
        response = await client.post(
            CALLBACK_PATH, data=_body(_event()), headers={"Authorization": header}
        )

        assert response.status == 200
        assert len(producer.sent) == 1

    async def test_no_auth_mode(
        self, make_client: MakeClient, producer: FakeProducer
    ) -> None:
        """With auth_required=False no credentials are asked for."""
        client = await make_client(
            _settings(callback_username=None, callback_password=None),
            auth_required=False,
        )

        response = await client.post(CALLBACK_PATH, data=_body(_event()))

        assert response.status == 200
        assert len(producer.sent) == 1

    def test_auth_without_credentials_is_a_config_error(self) -> None:
        """Requiring auth with no pair configured fails at construction."""
        settings = _settings(
            callback_username=None,
            callback_password=None,
            callback_extra_credentials={},
        )

        with pytest.raises(ConfigError, match="CALLBACK_USERNAME") as caught:
            create_app(settings)

        assert caught.value.context == {"key": "CALLBACK_USERNAME"}


class TestBodies:
    @pytest.mark.parametrize(
        ("body", "error"),
        [
            pytest.param(
                b"hello", "body is not valid JSON (at character 0)", id="text"
            ),
            pytest.param(
                b"[{]", "body is not valid JSON (at character 2)", id="broken"
            ),
            pytest.param(b"42", "body must be a JSON array or object", id="scalar"),
            pytest.param(b'"x"', "body must be a JSON array or object", id="string"),
            pytest.param(b'["\xff"]', "body is not valid UTF-8 (at byte 2)", id="utf8"),
        ],
    )
    async def test_invalid_body(
        self, client: Client, producer: FakeProducer, body: bytes, error: str
    ) -> None:
        """An unreadable body is a 400 with a JSON error; nothing is sent."""
        response = await client.post(CALLBACK_PATH, data=body, headers=AUTH)

        assert response.status == 400
        assert response.content_type == "application/json"
        assert await _json(response) == {
            "error": error,
            "requestId": response.headers["X-Request-Id"],
        }
        assert producer.sent == []

    async def test_content_type_and_charset_are_ignored(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """The body is read as UTF-8 JSON whatever the headers claim."""
        body = _body(_event(text="Zoë"))
        headers = {**AUTH, "Content-Type": "text/plain; charset=ISO-8859-1"}

        response = await client.post(CALLBACK_PATH, data=body, headers=headers)

        assert response.status == 200
        assert [s.value for s in producer.sent] == [orjson.dumps(_event(text="Zoë"))]

    async def test_empty_array(self, client: Client, producer: FakeProducer) -> None:
        """[] is answered 200 and publishes nothing."""
        response = await client.post(CALLBACK_PATH, data=b"[]", headers=AUTH)

        assert response.status == 200
        assert await _json(response) == {
            "accepted": 0,
            "deadLettered": 0,
            "requestId": response.headers["X-Request-Id"],
        }
        assert producer.sent == []

    async def test_single_object(self, client: Client, producer: FakeProducer) -> None:
        """A bare object is a one-item batch; its value is the trimmed body."""
        obj = orjson.dumps(_event(), option=orjson.OPT_INDENT_2)

        response = await client.post(
            CALLBACK_PATH, data=b"\xef\xbb\xbf\n " + obj + b"\r\n", headers=AUTH
        )

        assert response.status == 200
        assert (await _json(response))["accepted"] == 1
        assert [s.value for s in producer.sent] == [obj]


class TestBodySize:
    async def test_declared_length_over_limit(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """A Content-Length over the limit is refused with 413."""
        body = _body(_event()) + b" " * MAX_BODY

        response = await client.post(CALLBACK_PATH, data=body, headers=AUTH)

        assert response.status == 413
        assert (await _json(response))["error"] == f"body exceeds {MAX_BODY} bytes"
        assert producer.sent == []

    async def test_declared_length_is_refused_unread(self, client: Client) -> None:
        """The 413 is sent without waiting for a byte of the body."""
        status = await _status_before_body(client, AUTH)

        assert status == b"HTTP/1.1 413 Request Entity Too Large\r\n"

    async def test_chunked_body_over_limit(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """A chunked body is cut off with 413 as soon as it passes the limit."""

        async def chunks() -> AsyncIterator[bytes]:
            yield _body(_event())[:-1]
            for _ in range(4):
                yield b" " * 1000
            yield b"]"

        response = await client.post(CALLBACK_PATH, data=chunks(), headers=AUTH)

        assert response.status == 413
        assert producer.sent == []

    async def test_body_of_exactly_the_limit(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """The limit itself is allowed, chunked or not."""
        item = _body(_event())[1:-1]
        body = b"[" + item + b" " * (MAX_BODY - len(item) - 2) + b"]"
        assert len(body) == MAX_BODY

        async def chunks() -> AsyncIterator[bytes]:
            yield body[:1000]
            yield body[1000:]

        plain = await client.post(CALLBACK_PATH, data=body, headers=AUTH)
        chunked = await client.post(CALLBACK_PATH, data=chunks(), headers=AUTH)

        assert (plain.status, chunked.status) == (200, 200)
        assert [s.value for s in producer.sent] == [item, item]


class TestPublishing:
    async def test_records_of_valid_items(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """Each item goes to the events topic keyed by message id, with headers."""
        first, second = (
            _event("m-1"),
            _event("m-2", type="message-failed", errorCode=4770),
        )
        headers = {**AUTH, "X-Request-Id": "req-42"}

        response = await client.post(
            CALLBACK_PATH, data=_body(first, second), headers=headers
        )

        assert response.status == 200
        assert await _json(response) == {
            "accepted": 2,
            "deadLettered": 0,
            "requestId": "req-42",
        }
        assert [(s.topic, s.key, s.value) for s in producer.sent] == [
            ("http-test." + EVENTS_TOPIC, b"m-1", orjson.dumps(first)),
            ("http-test." + EVENTS_TOPIC, b"m-2", orjson.dumps(second)),
        ]
        for sent, item in zip(producer.sent, (first, second), strict=True):
            identity = event_identity(CallbackEvent.model_validate(item))
            assert sent.headers.keys() == {
                "event-id",
                "event-type",
                "received-at",
                "request-id",
            }
            assert sent.headers["event-id"] == identity.event_id.encode()
            assert sent.headers["event-type"] == item["type"].encode()
            assert sent.headers["request-id"] == b"req-42"
        received_at = producer.sent[0].headers["received-at"].decode()
        assert received_at.endswith("Z")
        assert len(received_at) == len("2026-03-02T18:00:00.744Z")

    async def test_unknown_type_is_published(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """A type this code does not know travels on like any other."""
        item = _event(type="message-expired", expiredAt="tomorrow")

        response = await client.post(CALLBACK_PATH, data=_body(item), headers=AUTH)

        assert response.status == 200
        assert [(s.topic, s.value) for s in producer.sent] == [
            ("http-test." + EVENTS_TOPIC, orjson.dumps(item))
        ]
        assert producer.sent[0].headers["event-type"] == b"message-expired"

    async def test_unroutable_items_are_dead_lettered(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """Bad items become dead letters naming fields; the rest is published."""
        no_id = _event()
        del no_id["message"]["id"]
        to_as_string = _event("m-3")
        to_as_string["message"]["to"] = "+15555550150"
        items = [_event("m-1"), no_id, 42, to_as_string, _event("m-5")]
        headers = {**AUTH, "X-Request-Id": "req-dlq"}

        response = await client.post(CALLBACK_PATH, data=_body(*items), headers=headers)

        assert response.status == 200
        assert await _json(response) == {
            "accepted": 2,
            "deadLettered": 3,
            "requestId": "req-dlq",
        }
        events = [s for s in producer.sent if s.topic.endswith(EVENTS_TOPIC)]
        letters = [
            orjson.loads(s.value) for s in producer.sent if s.topic.endswith(DLQ_TOPIC)
        ]
        assert [s.key for s in events] == [b"m-1", b"m-5"]
        assert [
            (s.key, s.headers) for s in producer.sent if s.topic.endswith(DLQ_TOPIC)
        ] == [(None, {})] * 3
        assert [letter["raw"] for letter in letters] == [
            orjson.dumps(no_id).decode(),
            "42",
            orjson.dumps(to_as_string).decode(),
        ]
        assert [letter["error"] for letter in letters] == [
            "invalid callback item: message.id: missing",
            "item is not a JSON object",
            "invalid callback item: message.to: list_type",
        ]
        assert {letter["requestId"] for letter in letters} == {"req-dlq"}
        assert letters[0]["receivedAt"] == events[0].headers["received-at"].decode()

    @pytest.mark.parametrize(
        ("field", "value", "error"),
        [
            ("time", "yesterday", "invalid callback item: time: value_error"),
            ("time", "2026-03-02T18:00:00", "invalid callback item: time: value_error"),
            ("type", 7, "invalid callback item: type: string_type"),
            ("errorCode", "4770", "invalid callback item: errorCode: int_type"),
            ("message", None, "invalid callback item: message: model_type"),
        ],
    )
    async def test_dead_letter_reasons_never_hold_values(
        self,
        client: Client,
        producer: FakeProducer,
        field: str,
        value: object,
        error: str,
    ) -> None:
        """Wrong types and times are dead-lettered with the field, not its value."""
        item = _event()
        item[field] = value

        response = await client.post(CALLBACK_PATH, data=_body(item), headers=AUTH)

        assert response.status == 200
        (letter,) = [orjson.loads(s.value) for s in producer.sent]
        assert letter["error"] == error


class TestKafkaFailures:
    @pytest.mark.parametrize(
        "failure",
        [
            pytest.param("ack_error", id="ack-refused"),
            pytest.param("send_error", id="send-refused"),
            pytest.param("hold_acks", id="ack-never-comes"),
        ],
    )
    async def test_unavailable(
        self, client: Client, producer: FakeProducer, failure: str
    ) -> None:
        """Any Kafka failure, or no ack by the deadline, is 503 with Retry-After."""
        if failure == "hold_acks":
            producer.hold_acks = True
        else:
            setattr(producer, failure, KafkaConnectionError("broker gone"))
        started = time.monotonic()

        response = await client.post(CALLBACK_PATH, data=_body(_event()), headers=AUTH)

        assert response.status == 503
        assert response.headers["Retry-After"] == "7"
        assert await _json(response) == {
            "error": "event store unavailable, retry later",
            "requestId": response.headers["X-Request-Id"],
        }
        assert time.monotonic() - started < 0.3 + 2.0

    async def test_one_failed_record_fails_the_batch(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """A dead letter that is not acknowledged fails the whole body."""
        producer.ack_error = KafkaTimeoutError()
        producer.failing_topic = "http-test." + DLQ_TOPIC

        response = await client.post(
            CALLBACK_PATH, data=_body(_event(), 1), headers=AUTH
        )

        assert response.status == 503
        assert [s.topic.removeprefix("http-test.") for s in producer.sent] == [
            EVENTS_TOPIC,
            DLQ_TOPIC,
        ]


class TestProbesAndIds:
    async def test_healthz(self, client: Client) -> None:
        """Liveness is always ok."""
        response = await client.get("/healthz")

        assert response.status == 200
        assert await _json(response) == {"status": "ok"}

    async def test_readyz_follows_the_broker(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """Readiness is 200 while the broker answers and 503 when it does not."""
        ready = await client.get("/readyz")
        producer.client.reachable = False
        unready = await client.get("/readyz")

        assert (ready.status, unready.status) == (200, 503)

    @pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/nowhere"])
    async def test_request_id_is_echoed(self, client: Client, path: str) -> None:
        """A well-formed X-Request-Id comes back on every response."""
        response = await client.get(path, headers={"X-Request-Id": "Ab9._-z"})

        assert response.headers["X-Request-Id"] == "Ab9._-z"

    @pytest.mark.parametrize(
        "offered", ["", "a" * 65, "has space", "semi;colon", "ünï"]
    )
    async def test_bad_request_id_is_replaced(
        self, client: Client, offered: str
    ) -> None:
        """A missing or odd X-Request-Id is replaced by a uuid4 hex."""
        response = await client.post(
            CALLBACK_PATH, data=b"[]", headers={**AUTH, "X-Request-Id": offered}
        )

        rid = response.headers["X-Request-Id"]
        assert len(rid) == 32
        assert int(rid, 16) >= 0
        assert (await _json(response))["requestId"] == rid


class TestMetricsAndLogs:
    async def test_counters(self, client: Client) -> None:
        """Requests count by status, items by type and dead letters by kind."""
        before = {
            "401": _sample("message_events_http_requests_total", status="401"),
            "200": _sample("message_events_http_requests_total", status="200"),
            "failed": _sample(
                "message_events_ingest_events_total", type="message-failed"
            ),
            "other": _sample("message_events_ingest_events_total", type="other"),
            "dead": _sample("message_events_dead_letters_total", reason="not_object"),
            "publish": _sample("message_events_publish_seconds_count"),
        }
        body = _body(_event(type="message-failed"), _event(type="brand-new"), 1, "two")

        await client.post(CALLBACK_PATH, data=body)
        await client.post(CALLBACK_PATH, data=body, headers=AUTH)
        response = await client.get("/metrics")

        after = {
            "401": _sample("message_events_http_requests_total", status="401"),
            "200": _sample("message_events_http_requests_total", status="200"),
            "failed": _sample(
                "message_events_ingest_events_total", type="message-failed"
            ),
            "other": _sample("message_events_ingest_events_total", type="other"),
            "dead": _sample("message_events_dead_letters_total", reason="not_object"),
            "publish": _sample("message_events_publish_seconds_count"),
        }
        assert {k: after[k] - before[k] for k in before} == {
            "401": 1,
            "200": 1,
            "failed": 1,
            "other": 1,
            "dead": 2,
            "publish": 1,
        }
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
        assert (
            f'message_events_http_requests_total{{status="401"}} {after["401"]}' in text
        )

    async def test_canonical_line(
        self, client: Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One INFO line per callback with the request's outcome."""
        caplog.set_level(logging.DEBUG, logger="ingest")
        headers = {**AUTH, "X-Request-Id": "req-log"}

        await client.post(CALLBACK_PATH, data=_body(_event(), 3), headers=headers)

        lines = [r for r in caplog.records if r.name == "ingest.app"]
        assert [(r.levelno, r.getMessage()) for r in lines] == [
            (logging.INFO, "callback answered")
        ]
        fields = dict(lines[0].fields)  # type: ignore[attr-defined]
        assert fields.pop("durationMs") >= 0
        assert fields == {
            "requestId": "req-log",
            "status": 200,
            "items": 2,
            "accepted": 1,
            "deadLettered": 1,
        }

    async def test_challenge_is_logged_at_debug_only(
        self, client: Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Bandwidth's unauthenticated first attempt is routine, not news."""
        caplog.set_level(logging.DEBUG, logger="ingest")

        await client.post(CALLBACK_PATH, data=_body(_event()))
        bad = {"Authorization": encode_basic_auth(USER, "nope")}
        await client.post(CALLBACK_PATH, data=_body(_event()), headers=bad)

        lines = [
            (r.levelno, r.fields["status"])  # type: ignore[attr-defined]
            for r in caplog.records
        ]
        assert lines == [(logging.DEBUG, 401), (logging.INFO, 401)]

    async def test_no_personal_data_in_logs(
        self, client: Client, producer: FakeProducer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Numbers, texts, bodies and credentials never reach a log record."""
        caplog.set_level(logging.DEBUG)
        no_id = _event()
        del no_id["message"]["id"]
        body = _body(_event(), no_id)
        wrong = {"Authorization": encode_basic_auth(USER, "pw-guess")}

        await client.post(CALLBACK_PATH, data=body, headers=wrong)
        await client.post(CALLBACK_PATH, data=body, headers=AUTH)
        await client.post(CALLBACK_PATH, data=body[:-3], headers=AUTH)
        producer.ack_error = KafkaConnectionError("gone")
        await client.post(CALLBACK_PATH, data=body, headers=AUTH)

        logged = " ".join(
            f"{r.getMessage()} {getattr(r, 'fields', '')} {r.exc_text or ''}"
            for r in caplog.records
        )
        for secret in ("+1555", "secret words", PASSWORD, "pw-guess", "delivered"):
            assert secret not in logged
        assert (
            len([r for r in caplog.records if r.getMessage() == "callback answered"])
            == 4
        )
