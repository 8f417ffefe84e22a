"""Hostile bodies over HTTP, each with its answer (a recording fake producer).

Every case asserts both the answer and what was published: a 200 means each
item left as exactly one event or one dead letter (plus, for an item too
large for one record, the chunks its dead letter points at), and any other
answer means nothing was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import REGISTRY

from ingest import CALLBACK_PATH, IngressServer, create_app
from ingest.blobs import CHUNK_COUNT_HEADER, CHUNK_INDEX_HEADER, reassemble
from message_events.settings import (
    DLQ_BLOBS_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    Settings,
    load_settings,
)
from schemas.outputs import RawRef
from tests.kafka_helpers import wait_until
from tests.test_ingest_http import AUTH, PASSWORD, USER, FakeProducer, Sent

PREFIX = "hostile."
MAX_BODY = 16384
MAX_RECORD = 2048
READ_TIMEOUT_MS = 400
READ_TIMEOUT_S = READ_TIMEOUT_MS / 1000

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


class SizedProducer(FakeProducer):
    """Refuses records over ``max_request_size`` as aiokafka's send() does."""

    def __init__(self, max_request_size: int) -> None:
        super().__init__()
        self.max_request_size = max_request_size

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            key, value, headers or []
        )
        if size > self.max_request_size:
            msg = f"The message is {size} bytes when serialized"
            raise MessageSizeTooLargeError(msg)
        return await super().send(topic, value, key=key, headers=headers)


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": "127.0.0.1:9",
        "topic_prefix": PREFIX,
        "callback_username": USER,
        "callback_password": PASSWORD,
        "max_body_bytes": MAX_BODY,
        "producer_max_request_bytes": MAX_RECORD,
        "body_read_timeout_ms": READ_TIMEOUT_MS,
        "publish_deadline_ms": 500,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def producer() -> SizedProducer:
    """A recording producer that refuses records as large as Kafka would."""
    return SizedProducer(MAX_RECORD)


@pytest.fixture
async def make_client(producer: SizedProducer) -> AsyncIterator[MakeClient]:
    """Build clients of ingress apps with these settings, overridden."""
    clients: list[Client] = []

    async def build(**overrides: Any) -> Client:
        app = create_app(_settings(**overrides), producer=producer)
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: MakeClient) -> Client:
    """A client of the ingress with small body and record limits."""
    return await make_client()


def event(message_id: str = "m-1", **message: Any) -> dict[str, Any]:
    """A routable message-received item; ``message`` fields override."""
    item: dict[str, Any] = {
        "type": "message-received",
        "time": "2026-03-02T18:00:00.744Z",
        "description": "Incoming message received",
        "to": "+15555550100",
        "message": {
            "id": message_id,
            "owner": "+15555550100",
            "direction": "in",
            "to": ["+15555550100"],
            "from": "+15555550150",
            "text": "hello",
            "segmentCount": 1,
        },
    }
    item["message"].update(message)
    return item


def js(value: object) -> bytes:
    """Compact JSON bytes."""
    return orjson.dumps(value)


def on(producer: FakeProducer, topic: str) -> list[Sent]:
    """What was sent to one topic (name without the prefix)."""
    return [s for s in producer.sent if s.topic == PREFIX + topic]


def letters(producer: FakeProducer) -> list[dict[str, Any]]:
    """The dead letters sent, parsed."""
    return [orjson.loads(s.value) for s in on(producer, DLQ_TOPIC)]


async def post(
    client: Client, body: bytes | Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST with credentials; the status and the JSON answer."""
    response = await client.post(
        CALLBACK_PATH, data=body, headers={**AUTH, **(headers or {})}
    )
    assert response.content_type == "application/json"
    return response.status, orjson.loads(await response.read())


def counts(answer: dict[str, Any]) -> tuple[int, int]:
    """An answer's (accepted, deadLettered)."""
    return answer["accepted"], answer["deadLettered"]


class TestLabels:
    @pytest.mark.parametrize(
        "content_type",
        [
            pytest.param(None, id="missing"),
            pytest.param("text/plain; charset=ISO-8859-1", id="latin-1-label"),
            pytest.param("application/json; charset=utf-16", id="utf-16-label"),
            pytest.param("application/x-www-form-urlencoded", id="form"),
            pytest.param("multipart/form-data; boundary=xyz", id="multipart"),
            pytest.param("image/png", id="image"),
            pytest.param("not a media type at all", id="garbage"),
        ],
    )
    async def test_content_type_is_ignored(
        self, client: Client, producer: FakeProducer, content_type: str | None
    ) -> None:
        """Wrong or missing labels: the bytes are still read as UTF-8 JSON."""
        item = js(event(text="Zoë ✓"))
        headers = {**AUTH}
        skip: list[str] = []
        if content_type is None:
            skip.append("Content-Type")
        else:
            headers["Content-Type"] = content_type

        response = await client.post(
            CALLBACK_PATH,
            data=b"[" + item + b"]",
            headers=headers,
            skip_auto_headers=skip,
        )

        assert response.status == 200
        assert [s.value for s in on(producer, EVENTS_TOPIC)] == [item]

    async def test_byte_order_mark_is_dropped(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """One leading UTF-8 BOM is not part of any item."""
        item = js(event())

        status, answer = await post(client, b"\xef\xbb\xbf[" + item + b"]")

        assert (status, counts(answer)) == (200, (1, 0))
        assert [s.value for s in producer.sent] == [item]

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"\xef\xbb\xbf\xef\xbb\xbf[]", id="two-boms"),
            pytest.param(b"\xfe\xff\x00[\x00]", id="utf-16-be-bom"),
            pytest.param("[]".encode("utf-16-le"), id="utf-16-le"),
        ],
    )
    async def test_other_marks_and_encodings_are_refused(
        self, client: Client, producer: FakeProducer, body: bytes
    ) -> None:
        """Only UTF-8 is read: a second BOM or UTF-16 is a 400."""
        status, _ = await post(client, body)

        assert status == 400
        assert producer.sent == []


class TestText:
    @pytest.mark.parametrize(
        ("body", "error"),
        [
            pytest.param(b'[{"a": "\xff"}]', "at byte 8", id="ff"),
            pytest.param(b'[{"a": "\xc3"}]', "at byte 8", id="truncated-sequence"),
            pytest.param(b'[{"a": "\xed\xa0\x80"}]', "at byte 8", id="utf8-surrogate"),
            pytest.param(b'[{"a": "\xc0\xaf"}]', "at byte 8", id="overlong"),
            pytest.param(b'[{"a": "\xf4\x90\x80\x80"}]', "at byte 8", id="past-10ffff"),
        ],
    )
    async def test_invalid_utf8_is_400(
        self, client: Client, producer: FakeProducer, body: bytes, error: str
    ) -> None:
        """Bytes that are not UTF-8 refuse the body, naming the byte only."""
        status, answer = await post(client, body)

        assert status == 400
        assert answer["error"] == f"body is not valid UTF-8 ({error})"
        assert producer.sent == []

    async def test_lone_surrogate_escape_is_dead_lettered(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """``"\\ud800"`` is JSON but not Unicode: that item alone is dead-lettered,
        its text kept as received; the items around it are published."""
        broken = js(event("m-2"))[:-2] + b',"x":"a\\ud800b"}}'
        first, last = js(event("m-1")), js(event("m-3"))
        body = b"[" + first + b"," + broken + b"," + last + b"]"

        status, answer = await post(client, body)

        assert (status, counts(answer)) == (200, (2, 1))
        assert [s.value for s in on(producer, EVENTS_TOPIC)] == [first, last]
        (letter,) = letters(producer)
        assert letter["raw"].encode() == broken
        assert letter["error"] == (
            "item holds an escaped lone surrogate, which is not Unicode"
        )

    async def test_escaped_surrogate_pair_is_published_as_received(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """A proper escaped pair (🚀 as \\ud83d\\ude80) is routed, escapes kept."""
        item = js(event())[:-2] + b',"x":"\\ud83d\\ude80"}}'

        status, _ = await post(client, b"[" + item + b"]")

        assert status == 200
        assert [s.value for s in on(producer, EVENTS_TOPIC)] == [item]

    async def test_escaped_nul_and_controls_are_published_as_received(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """NUL and control characters, escaped, are text like any other."""
        item = js(event(text="a\x00b\x01c\x1f\x7f\u2028\u2029 \x08\x0c\r\n\t"))
        assert b"\\u0000" in item

        status, _ = await post(client, b"[" + item + b"]")

        assert status == 200
        assert [s.value for s in on(producer, EVENTS_TOPIC)] == [item]

    @pytest.mark.parametrize("char", [b"\x00", b"\x01", b"\x1f", b"\n", b"\t"])
    async def test_raw_control_characters_in_strings_are_400(
        self, client: Client, producer: FakeProducer, char: bytes
    ) -> None:
        """Unescaped characters below U+0020 inside a string are not JSON."""
        item = js(event(text="a#b")).replace(b"#", char)

        status, answer = await post(client, b"[" + item + b"]")

        assert status == 400
        assert answer["error"].startswith("body is not valid JSON (at character ")
        assert producer.sent == []

    async def test_emoji_and_right_to_left_text_are_kept_byte_for_byte(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """Astral emoji, ZWJ sequences, flags, bidi controls and combining marks."""
        text = (
            "👨‍👩‍👧‍👦 🇨🇦 🚀 "
            "שלום עולם مرحبا بالعالم \u202eevil\u202c "
            "\u200f\u200e Zoë e\u0301 \U0001f9ff"
        )
        item = js(event("m-🚀", text=text, **{"from": "\u202e+15555550150"}))

        status, _ = await post(client, b"[\n  " + item + b"\n]")

        assert status == 200
        (sent,) = on(producer, EVENTS_TOPIC)
        assert (sent.key, sent.value) == ("m-🚀".encode(), item)


class TestStructure:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"[" * 100_000, id="100k-open-brackets"),
            pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100k-deep-array"),
            pytest.param(b'{"a":' * 3000 + b"1" + b"}" * 3000, id="3000-deep-object"),
        ],
    )
    async def test_deep_nesting_is_400(
        self, make_client: MakeClient, producer: FakeProducer, body: bytes
    ) -> None:
        """Nesting past the parsers' limits refuses the body: no RecursionError."""
        client = await make_client(max_body_bytes=1024 * 1024)

        status, _ = await post(client, body)

        assert status == 400
        assert producer.sent == []

    async def test_item_nested_past_the_event_model_is_dead_lettered(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """Deeper than the processors' parser reads (200): that item is a dead
        letter, the rest is published."""
        deep = js(event())[:-2] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}}"
        good = js(event("m-2"))

        status, answer = await post(client, b"[" + deep + b"," + good + b"]")

        assert (status, counts(answer)) == (200, (1, 1))
        assert [s.value for s in on(producer, EVENTS_TOPIC)] == [good]
        (letter,) = letters(producer)
        assert letter["raw"].encode() == deep
        assert "recursion limit exceeded" in letter["error"]

    @pytest.mark.parametrize(
        ("number", "routed", "error"),
        [
            pytest.param(b"1e400", False, "message.segmentCount: int_type", id="1e400"),
            pytest.param(b"9" * 500, True, "", id="500-digits"),
            pytest.param(b"18446744073709551617", True, "", id="past-64-bits"),
            pytest.param(
                b"-1e-400", False, "message.segmentCount: int_type", id="tiny"
            ),
            pytest.param(b"2.0", False, "message.segmentCount: int_type", id="float"),
        ],
    )
    async def test_huge_numbers_are_routed_or_dead_lettered(
        self,
        client: Client,
        producer: FakeProducer,
        number: bytes,
        routed: bool,
        error: str,
    ) -> None:
        """A number orjson cannot hold never refuses the body, never fails it."""
        item = js(event(segmentCount=7)).replace(
            b'"segmentCount":7', b'"segmentCount":' + number
        )
        extra = js(event("m-2"))[:-2] + b',"big":' + number + b"}}"

        status, _ = await post(client, b"[" + item + b"," + extra + b"]")

        assert status == 200
        events = [s.value for s in on(producer, EVENTS_TOPIC)]
        assert events == ([item, extra] if routed else [extra])
        assert [letter["error"] for letter in letters(producer)] == (
            [] if routed else [f"invalid callback item: {error}"]
        )

    async def test_integer_beyond_the_parsers_digit_limit_is_400(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """More than 4300 digits is past what Python will read: a 400."""
        status, answer = await post(client, b'[{"n": ' + b"9" * 5000 + b"}]")

        assert status == 400
        assert answer["error"].startswith("body is not valid JSON")
        assert producer.sent == []

    async def test_duplicate_keys_last_one_wins(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """Duplicate keys are routed by their last value; the bytes keep both."""
        item = js(event()).replace(
            b'"type":"message-received"',
            b'"type":"message-sent","type":"message-received"',
        )

        status, _ = await post(client, b"[" + item + b"]")

        assert status == 200
        (sent,) = on(producer, EVENTS_TOPIC)
        assert sent.value == item
        assert sent.headers["event-type"] == b"message-received"

    @pytest.mark.parametrize(
        ("change", "error"),
        [
            pytest.param(
                {"to": "+15555550100"}, "message.to: list_type", id="to-string"
            ),
            pytest.param(
                {"to": [15555550100]}, "message.to.0: string_type", id="to-numbers"
            ),
            pytest.param(
                {"from": {"n": "+1555"}}, "message.from: string_type", id="from-object"
            ),
            pytest.param(
                {"from": ["+1555"]}, "message.from: string_type", id="from-list"
            ),
            pytest.param({"text": 42}, "message.text: string_type", id="text-number"),
            pytest.param(
                {"segmentCount": "1"},
                "message.segmentCount: int_type",
                id="segments-string",
            ),
            pytest.param(
                {"segmentCount": True},
                "message.segmentCount: int_type",
                id="segments-bool",
            ),
            pytest.param({"id": ""}, "message.id: string_too_short", id="empty-id"),
            pytest.param({"id": 7}, "message.id: string_type", id="id-number"),
        ],
    )
    async def test_mistyped_message_fields_are_dead_lettered(
        self,
        client: Client,
        producer: FakeProducer,
        change: dict[str, Any],
        error: str,
    ) -> None:
        """A field of the wrong type is a dead letter naming the field only."""
        item = js(event(**change))

        status, answer = await post(client, b"[" + item + b"]")

        assert (status, counts(answer)) == (200, (0, 1))
        (letter,) = letters(producer)
        assert (letter["raw"].encode(), letter["error"]) == (
            item,
            f"invalid callback item: {error}",
        )

    @pytest.mark.parametrize(
        ("change", "error"),
        [
            pytest.param(
                {"errorCode": "4770"}, "errorCode: int_type", id="code-string"
            ),
            pytest.param({"errorCode": 4770.5}, "errorCode: int_type", id="code-float"),
            pytest.param({"to": None}, "to: string_type", id="to-null"),
            pytest.param({"time": None}, "time: string_type", id="time-null"),
            pytest.param({"message": []}, "message: model_type", id="message-list"),
        ],
    )
    async def test_mistyped_envelope_fields_are_dead_lettered(
        self,
        client: Client,
        producer: FakeProducer,
        change: dict[str, Any],
        error: str,
    ) -> None:
        """The envelope's required fields and errorCode are checked too."""
        item = js({**event(), **change})

        status, _ = await post(client, b"[" + item + b"]")

        assert status == 200
        assert [letter["error"] for letter in letters(producer)] == [
            f"invalid callback item: {error}"
        ]

    async def test_null_in_every_optional_field_is_routed(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """Optional fields may all be null; the item is an event as received."""
        optional: dict[str, Any] = dict.fromkeys(
            ["direction", "owner", "from", "to", "text", "media", "segmentCount"]
        )
        optional.update(tag=None, channel=None, time=None)
        item = js(
            {
                **event(**optional),
                "description": None,
                "errorCode": None,
                "carrierName": None,
                "eventTime": None,
            }
        )

        status, answer = await post(client, b"[" + item + b"]")

        assert (status, counts(answer)) == (200, (1, 0))
        assert [s.value for s in on(producer, EVENTS_TOPIC)] == [item]


def _chunks(producer: FakeProducer, ref: RawRef) -> list[tuple[int, int, bytes]]:
    return [
        (
            int(s.headers[CHUNK_INDEX_HEADER]),
            int(s.headers[CHUNK_COUNT_HEADER]),
            s.value,
        )
        for s in on(producer, DLQ_BLOBS_TOPIC)
        if s.key == ref.sha256.encode()
    ]


class TestItemLargerThanARecord:
    async def test_too_large_event_is_kept_by_reference(
        self, client: Client, producer: SizedProducer
    ) -> None:
        """The big item's bytes go to the blobs topic in chunks, its dead letter
        points at them, and the rest of the body is published: not a 503."""
        big = js(event("m-big", text="é" * 3000))
        small = [js(event("m-1")), js(event("m-2"))]
        body = b"[" + small[0] + b",\n" + big + b",\n" + small[1] + b"]"

        status, answer = await post(client, body, {"X-Request-Id": "big-1"})

        assert (status, counts(answer)) == (200, (2, 1))
        assert [s.value for s in on(producer, EVENTS_TOPIC)] == small
        (letter,) = letters(producer)
        ref = RawRef.model_validate(letter.pop("rawRef"))
        assert letter["raw"] is None
        assert letter["error"] == (
            f"item of {len(big)} bytes is larger than one record may be "
            "(PRODUCER_MAX_REQUEST_BYTES)"
        )
        assert (ref.topic, ref.size) == (PREFIX + DLQ_BLOBS_TOPIC, len(big))
        assert ref.chunks == -(-len(big) // (MAX_RECORD // 2)) >= 2
        assert reassemble(ref, _chunks(producer, ref)) == big
        for sent in on(producer, DLQ_BLOBS_TOPIC):
            assert sent.headers["request-id"] == b"big-1"
            assert len(sent.value) <= MAX_RECORD // 2

    async def test_too_large_invalid_item_keeps_its_reason(
        self, client: Client, producer: SizedProducer
    ) -> None:
        """An unroutable item too big for a dead letter is kept by reference too."""
        big = js({"not": "an event", "padding": "x" * 5000})

        status, answer = await post(client, b"[" + big + b"]")

        assert (status, counts(answer)) == (200, (0, 1))
        (letter,) = letters(producer)
        assert letter["raw"] is None
        assert letter["error"].startswith("invalid callback item: type: missing")
        assert letter["error"].endswith(f"item of {len(big)} bytes kept by reference")
        ref = RawRef.model_validate(letter["rawRef"])
        assert reassemble(ref, _chunks(producer, ref)) == big

    async def test_item_whose_dead_letter_would_be_too_large(
        self, client: Client, producer: SizedProducer
    ) -> None:
        """Escaping can make a letter larger than its item: still by reference."""
        item = js(["\\" * 700])  # not an object; each backslash doubles twice
        assert len(item) < MAX_RECORD - 200

        status, _ = await post(client, b"[" + item + b"]")

        assert status == 200
        (letter,) = letters(producer)
        ref = RawRef.model_validate(letter["rawRef"])
        assert reassemble(ref, _chunks(producer, ref)) == item

    async def test_many_large_items_at_the_body_limit(
        self, client: Client, producer: SizedProducer
    ) -> None:
        """A body at MAX_BODY_BYTES of items all too large: every one kept."""
        items = [js(event(f"m-{i}", text="z" * 3000)) for i in range(5)]
        body = b"[" + b",".join(items) + b"]"
        body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"]"
        assert len(body) == MAX_BODY

        status, answer = await post(client, body)

        assert (status, counts(answer)) == (200, (0, 5))
        for item, letter in zip(items, letters(producer), strict=True):
            ref = RawRef.model_validate(letter["rawRef"])
            assert reassemble(ref, _chunks(producer, ref)) == item


class TestBodySize:
    @pytest.mark.parametrize(
        ("size", "status"),
        [(MAX_BODY - 1, 200), (MAX_BODY, 200), (MAX_BODY + 1, 413)],
    )
    @pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
    async def test_just_under_at_and_just_over_the_limit(
        self,
        client: Client,
        producer: FakeProducer,
        size: int,
        status: int,
        chunked: bool,
    ) -> None:
        """One byte decides between 200 and 413, declared length or chunked."""
        item = js(event())
        body = b"[" + item + b" " * (size - len(item) - 2) + b"]"
        assert len(body) == size

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        answer, _ = await post(client, chunks() if chunked else body)

        assert answer == status
        assert [s.value for s in producer.sent] == ([item] if status == 200 else [])


class TestEncodings:
    @pytest.mark.parametrize(
        ("encoding", "compress"),
        [("gzip", gzip.compress), ("deflate", zlib.compress)],
    )
    async def test_compressed_body_is_read(
        self,
        client: Client,
        producer: FakeProducer,
        encoding: str,
        compress: Callable[[bytes], bytes],
    ) -> None:
        """A compressed body is taken decompressed, bytes of the items kept."""
        item = js(event())

        status, _ = await post(
            client, compress(b"[" + item + b"]"), {"Content-Encoding": encoding}
        )

        assert status == 200
        assert [s.value for s in producer.sent] == [item]

    @pytest.mark.parametrize("encoding", ["gzip", "deflate"])
    async def test_broken_compression_is_400_not_500(
        self,
        client: Client,
        producer: FakeProducer,
        encoding: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Bytes that do not decompress are a 400 with a JSON error, and the
        connection, whose framing is lost, is closed without an error logged."""
        caplog.set_level(logging.DEBUG)

        response = await client.post(
            CALLBACK_PATH,
            data=b"[this is not compressed]",
            headers={**AUTH, "Content-Encoding": encoding},
        )

        assert response.status == 400
        assert response.headers["Connection"] == "close"
        answer = orjson.loads(await response.read())
        assert answer["error"] == "body could not be read (ContentEncodingError)"
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert producer.sent == []

    async def test_compressed_bomb_is_cut_at_the_limit(
        self, client: Client, producer: FakeProducer
    ) -> None:
        """The limit applies to the decompressed bytes: 413, memory bounded."""
        bomb = gzip.compress(b"[" + b" " * (MAX_BODY * 100) + b"]")
        assert len(bomb) < MAX_BODY

        status, _ = await post(client, bomb, {"Content-Encoding": "gzip"})

        assert status == 413
        assert producer.sent == []


@pytest.fixture
async def server(producer: SizedProducer) -> AsyncIterator[IngressServer]:
    """The ingress as it runs in production, on a loopback port."""
    server = IngressServer(_settings(), host="127.0.0.1", port=0, producer=producer)
    await server.start()
    yield server
    await server.stop()


async def _raw_exchange(
    port: int, head: bytes, parts: list[bytes], pause_s: float
) -> tuple[bytes, float, float]:
    """Send a request head, then ``parts`` with pauses. Everything that came
    back, when its first byte came and when the server closed."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = loop.time()

    async def trickle() -> None:
        writer.write(head)
        for part in parts:
            await asyncio.sleep(pause_s)
            writer.write(part)

    sender = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(10):
            first = await reader.read(1)
            answered = loop.time() - started
            answer = first + await reader.read()
    finally:
        sender.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError):  # the server closed first
            await writer.wait_closed()
    return answer, answered, loop.time() - started


def _head(port: int, framing: str) -> bytes:
    lines = [
        f"POST {CALLBACK_PATH} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: {AUTH['Authorization']}",
        framing,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class TestSlowClients:
    @pytest.mark.parametrize(
        "chunked", [False, True], ids=["content-length", "chunked"]
    )
    async def test_trickling_client_gets_408_and_a_closed_connection(
        self, server: IngressServer, producer: FakeProducer, chunked: bool
    ) -> None:
        """A body arriving a byte at a time is cut at BODY_READ_TIMEOUT_MS, and
        the connection closed at most as long again later."""
        body = b"[" + js(event()) + b"]"
        if chunked:
            head = _head(server.port, "Transfer-Encoding: chunked")
            parts = [b"1\r\n" + bytes([b]) + b"\r\n" for b in body]
        else:
            head = _head(server.port, f"Content-Length: {len(body)}")
            parts = [bytes([b]) for b in body]

        answer, answered, closed = await _raw_exchange(
            server.port, head, parts, pause_s=0.05
        )

        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"Connection: close" in answer
        assert b'"error":"body not received within 400 ms"' in answer
        assert READ_TIMEOUT_S <= answered < READ_TIMEOUT_S + 1
        assert closed < 2 * READ_TIMEOUT_S + 1
        assert producer.sent == []

    async def test_silent_client_after_the_head_gets_408(
        self, server: IngressServer, producer: FakeProducer
    ) -> None:
        """A declared body that never comes is cut the same way."""
        head = _head(server.port, "Content-Length: 500")

        answer, answered, closed = await _raw_exchange(server.port, head, [], pause_s=0)

        assert answer.startswith(b"HTTP/1.1 408 ")
        assert answered < READ_TIMEOUT_S + 1
        assert closed < 2 * READ_TIMEOUT_S + 1
        assert producer.sent == []

    async def test_slow_but_in_time_is_accepted(
        self, server: IngressServer, producer: FakeProducer
    ) -> None:
        """A body that arrives in pieces but within the deadline is taken."""
        body = b"[" + js(event()) + b"]"
        head = _head(server.port, f"Content-Length: {len(body)}\r\nConnection: close")
        parts = [body[: len(body) // 2], body[len(body) // 2 :]]

        answer, _, _ = await _raw_exchange(server.port, head, parts, pause_s=0.05)

        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert [s.value for s in producer.sent] == [body[1:-1]]

    async def test_client_gone_mid_body_publishes_nothing(
        self, server: IngressServer, producer: FakeProducer
    ) -> None:
        """Half a body then a closed connection: nothing is published, and the
        request is not counted as a server error."""

        def answered(status: str) -> float:
            sample = REGISTRY.get_sample_value(
                "message_events_http_requests_total", {"status": status}
            )
            return sample or 0.0

        before = {status: answered(status) for status in ("400", "500")}
        body = b"[" + js(event()) + b"]"
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(_head(server.port, f"Content-Length: {len(body)}"))
        writer.write(body[:20])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: answered("400") > before["400"], timeout_s=5)

        assert answered("500") == before["500"]
        assert producer.sent == []
