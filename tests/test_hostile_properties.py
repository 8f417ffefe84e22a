"""Property-based tests of the body parser, the routing and the models.

Hypothesis generates arbitrary bytes, arbitrary JSON values in many spellings,
and event-like objects mixing valid and wrong fields. Whatever comes in, the
parser either cuts it into items or refuses it with ``InvalidBody``; item
slices re-parse to the values; every item leaves as exactly one event or one
dead letter; an event's value is the item's bytes; and what is routed is
what the processors can read.
"""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ingest.blobs import BlobError, reassemble, split
from ingest.body import BOM, InvalidBody, Item, parse_items
from ingest.records import Record, route_items
from message_events.settings import (
    DLQ_BLOBS_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    Settings,
    load_settings,
)
from schemas.events import CallbackEvent
from schemas.outputs import DeadLetter, RawRef

MAX_RECORD = 2048
SETTINGS: Settings = load_settings(
    kafka_bootstrap_servers="127.0.0.1:9",
    topic_prefix="p.",
    producer_max_request_bytes=MAX_RECORD,
)
WHITESPACE = st.text(alphabet=" \t\r\n", max_size=3)
PHONES = st.integers(0, 9_999_999).map(lambda n: f"+1555{n:07d}")
# Marks values that stand for personal data: never in a dead letter's reason.
SECRET = "S3CR3T"

# Leaf values as JSON can hold them, including what orjson cannot: integers
# past 64 bits and text with lone surrogates (written escaped, see below).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**600), max_value=10**600),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec=None), max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=25,
)


def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


CONTAINERS = st.one_of(
    st.lists(json_values, max_size=5),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
)


@st.composite
def spellings(draw: st.DrawFn, value: object) -> bytes:
    """One of the many byte spellings of ``value`` as JSON text."""
    ascii_only = draw(st.booleans()) or _has_surrogate(value)
    indent = draw(st.sampled_from([None, 0, 1, 2, "\t"]))
    comma = draw(st.sampled_from([",", ", ", " ,", ",\n", "\t,\r\n "]))
    colon = draw(st.sampled_from([":", ": ", " : ", ":\t"]))
    text = json.dumps(
        value, ensure_ascii=ascii_only, indent=indent, separators=(comma, colon)
    )
    before, after = draw(WHITESPACE), draw(WHITESPACE)
    bom = BOM if draw(st.booleans()) else b""
    return bom + (before + text + after).encode()


@st.composite
def json_bodies(draw: st.DrawFn) -> tuple[object, bytes]:
    """A JSON value and one of its spellings."""
    value = draw(json_values)
    return value, draw(spellings(value))


def _wrong() -> st.SearchStrategy[Any]:
    """A small value of any JSON type, phone numbers and secrets among them."""
    secret_text = st.text(max_size=6).map(lambda t: f"{SECRET}{t}")
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([-0.0, 2.5, 1e300, 10**30, -(10**25)]),
        st.text(max_size=5),
        st.sampled_from(["\ud800", "a\udfffb", "\x00", "🚀", "\u202e"]),
        st.lists(PHONES, max_size=2),
        st.builds(lambda p: {"n": p}, PHONES),
        secret_text,
        PHONES,
    )


WRONG = _wrong()


# Built once: building strategies inside a composite costs more than drawing.
MESSAGE_FIELDS = {
    "id": st.text(min_size=1, max_size=30),
    "direction": st.sampled_from(["in", "out"]),
    "owner": PHONES,
    "from": PHONES,
    "to": st.lists(PHONES, max_size=3),
    "text": st.text(max_size=40).map(lambda t: SECRET + t),
    "segmentCount": st.integers(min_value=0, max_value=10**30),
    "tag": st.none() | st.text(max_size=10).map(SECRET.__add__),
}
EVENT_FIELDS = {
    "type": st.sampled_from(["message-received", "message-failed", "x"]),
    "time": st.sampled_from(
        [
            "2026-03-02T18:00:00Z",
            "2026-03-02T18:00:00.744Z",
            "2026-03-02T18:00:00.123456+01:00",
        ]
    ),
    "to": PHONES,
    "errorCode": st.none() | st.integers(4000, 9999),
}
DROPPABLE = st.sampled_from([*EVENT_FIELDS, "message", "message.id"])
PADDING = st.sampled_from([100, 1200, 3000])
ODDS = st.integers(0, 99)


@st.composite
def event_like(draw: st.DrawFn) -> object:
    """An object shaped like a callback item: most fields right, a few wrong
    (4 % each), sometimes one missing, sometimes padded past a record."""

    def field(right: st.SearchStrategy[Any]) -> Any:
        return draw(right) if draw(ODDS) >= 4 else draw(WRONG)

    if draw(ODDS) < 5:
        return draw(WRONG)
    message = {name: field(value) for name, value in MESSAGE_FIELDS.items()}
    item: dict[str, Any] = {name: field(value) for name, value in EVENT_FIELDS.items()}
    item["message"] = message if draw(ODDS) >= 4 else draw(WRONG)
    if draw(ODDS) < 15:
        missing = draw(DROPPABLE)
        if missing == "message.id":
            if isinstance(item["message"], dict):
                item["message"].pop("id", None)
        else:
            del item[missing]
    if draw(ODDS) < 10:
        item["padding"] = "é" * draw(PADDING)
    return item


def _slices_in_order(body: bytes, items: list[Item]) -> bytes:
    """What is left of ``body`` once every item's bytes are cut out, in order;
    fails if an item is not a slice of the body after the previous one."""
    rest, position = bytearray(), 0
    for item in items:
        start = body.find(item.raw, position)
        assert start >= 0, "an item is not a slice of the body"
        rest += body[position:start]
        position = start + len(item.raw)
    return bytes(rest + body[position:])


class TestParserProperties:
    @settings(max_examples=2000, deadline=None)
    @given(st.binary(max_size=200))
    def test_arbitrary_bytes_parse_or_are_refused(self, body: bytes) -> None:
        """Any bytes at all: items, or InvalidBody; never another exception."""
        try:
            items = parse_items(body)
        except InvalidBody:
            return
        assert all(isinstance(item, Item) for item in items)

    @settings(max_examples=1000, deadline=None)
    @given(
        st.lists(
            st.sampled_from(
                [
                    *(b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"1"),
                    *(b"e", b"-", b".", b"null", b"\\u", b"d800", b" ", b"\xff"),
                    b"\x00",
                ]
            ),
            max_size=60,
        ).map(b"".join)
    )
    def test_json_shaped_noise_parses_or_is_refused(self, body: bytes) -> None:
        """Bytes made of JSON's own punctuation: items, or InvalidBody."""
        try:
            items = parse_items(body)
        except InvalidBody:
            return
        assert isinstance(json.loads(body.removeprefix(BOM)), list | dict)
        assert len(items) == len(json.loads(body.removeprefix(BOM))) or isinstance(
            json.loads(body.removeprefix(BOM)), dict
        )

    @settings(max_examples=1000, deadline=None)
    @given(json_bodies())
    def test_items_are_slices_that_reparse_to_the_values(
        self, drawn: tuple[object, bytes]
    ) -> None:
        """Arrays give one item per element, objects one item; each item is a
        slice of the body, in order, re-parsing to its value; anything else
        is refused as a scalar."""
        value, body = drawn

        if not isinstance(value, list | dict):
            with pytest.raises(InvalidBody, match="must be a JSON array or object"):
                parse_items(body)
            return
        items = parse_items(body)

        elements = value if isinstance(value, list) else [value]
        assert [item.value for item in items] == elements
        assert [json.loads(item.raw) for item in items] == elements
        assert [item.raw for item in items] == [i.text.encode() for i in items]
        rest = _slices_in_order(body.removeprefix(BOM), items)
        assert set(rest.decode()) <= set("[], \t\r\n")

    @settings(max_examples=300, deadline=None)
    @given(json_bodies(), st.data())
    def test_invalid_utf8_anywhere_is_refused(
        self, drawn: tuple[object, bytes], data: st.DataObject
    ) -> None:
        """One byte that cannot be UTF-8, anywhere, refuses the body."""
        _, body = drawn
        at = data.draw(st.integers(0, len(body)))
        bad = data.draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80"]))

        with pytest.raises(InvalidBody, match="not valid UTF-8"):
            parse_items(body[:at] + bad + body[at:])


class TestModelProperties:
    @settings(max_examples=1000, deadline=None)
    @given(json_values)
    def test_event_model_refuses_only_with_validation_errors(
        self, value: object
    ) -> None:
        """Any JSON value: an event or a ValidationError, from the value and
        from its bytes alike."""
        with contextlib.suppress(pydantic.ValidationError):
            CallbackEvent.model_validate(value)
        with contextlib.suppress(pydantic.ValidationError):
            CallbackEvent.model_validate_json(
                json.dumps(value, ensure_ascii=True).encode()
            )

    @settings(max_examples=1000, deadline=None)
    @given(st.binary(max_size=300))
    def test_event_model_reads_any_bytes_without_crashing(self, raw: bytes) -> None:
        """As the processors read records: only ValidationError."""
        with contextlib.suppress(pydantic.ValidationError):
            CallbackEvent.model_validate_json(raw)


def _check_routed(items: list[Item], records: list[Record]) -> list[str]:
    """Assert each item left as one event or one dead letter, in order;
    the topic of each item's record."""
    position = 0
    topics: list[str] = []
    for item in items:
        record = records[position]
        blobs: list[Record] = []
        while record.topic == SETTINGS.topic(DLQ_BLOBS_TOPIC):
            blobs.append(record)
            position += 1
            record = records[position]
        position += 1
        assert record.size() <= MAX_RECORD
        if record.topic == SETTINGS.topic(EVENTS_TOPIC):
            assert not blobs
            assert record.value == item.raw
            event = CallbackEvent.model_validate_json(record.value)
            assert record.key == event.message.id.encode()
        else:
            assert record.topic == SETTINGS.topic(DLQ_TOPIC)
            letter = DeadLetter.model_validate_json(record.value)
            assert SECRET not in letter.error
            assert "1555" not in letter.error
            if letter.raw_ref is None:
                assert not blobs
                assert letter.raw == item.text
            else:
                assert letter.raw is None
                chunks = [
                    (
                        int(dict(b.headers)["chunk-index"]),
                        int(dict(b.headers)["chunk-count"]),
                        b.value,
                    )
                    for b in blobs
                ]
                assert all(b.size() <= MAX_RECORD for b in blobs)
                assert reassemble(letter.raw_ref, chunks) == item.raw
        topics.append(record.topic)
    assert position == len(records)
    return topics


class TestRoutingProperties:
    @settings(
        max_examples=1500,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(event_like(), max_size=4).flatmap(lambda v: spellings(v)))
    def test_every_item_is_routed_or_dead_lettered(self, body: bytes) -> None:
        """Event-like items, right or wrong: each becomes one event (its bytes,
        readable by the processors) or one dead letter (its text, or its
        bytes by reference); the counts add up; nothing raises."""
        items = parse_items(body)

        routed = route_items(
            items,
            settings=SETTINGS,
            request_id="r-1",
            received_at="2026-03-02T18:00:00.000Z",
        )

        topics = _check_routed(items, routed.records)
        for kind in {
            *routed.dead_letter_kinds,
            *("routed" for _ in routed.accepted_types),
        }:
            event(kind)
        assert len(routed.accepted_types) == topics.count(SETTINGS.topic(EVENTS_TOPIC))
        assert len(routed.dead_letter_kinds) == topics.count(SETTINGS.topic(DLQ_TOPIC))
        assert set(routed.dead_letter_kinds) <= {
            "not_object",
            "missing_field",
            "invalid_field",
            "unreadable",
            "not_unicode",
            "too_large",
        }

    @settings(max_examples=600, deadline=None)
    @given(CONTAINERS.flatmap(lambda v: spellings(v)))
    def test_arbitrary_json_items_are_routed_or_dead_lettered(
        self, body: bytes
    ) -> None:
        """Whatever the items hold, routing never raises and loses nothing."""
        items = parse_items(body)

        routed = route_items(
            items,
            settings=SETTINGS,
            request_id="r-2",
            received_at="2026-03-02T18:00:00.000Z",
        )

        _check_routed(items, routed.records)


class TestBlobProperties:
    @settings(max_examples=500, deadline=None)
    @given(st.binary(min_size=1, max_size=5000), st.integers(1, 700), st.randoms())
    def test_chunks_reassemble_in_any_order_with_duplicates(
        self, raw: bytes, size: int, shuffle: random.Random
    ) -> None:
        """Chunks shuffled and some sent twice still give the bytes back."""
        ref, chunks = split(raw, size, topic="blobs")
        numbered = [(i, len(chunks), c) for i, c in enumerate(chunks)]
        copies = numbered + shuffle.sample(numbered, k=len(numbered) // 2)
        shuffle.shuffle(copies)

        assert reassemble(ref, copies) == raw
        assert ref == RawRef.model_validate(orjson.loads(ref.model_dump_json()))
        assert all(len(c) <= size for c in chunks)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(min_size=2, max_size=2000), st.integers(1, 500), st.data())
    def test_a_missing_or_altered_chunk_is_detected(
        self, raw: bytes, size: int, data: st.DataObject
    ) -> None:
        """Reassembly never returns wrong bytes."""
        ref, chunks = split(raw, size, topic="blobs")
        numbered = [(i, len(chunks), c) for i, c in enumerate(chunks)]
        victim = data.draw(st.integers(0, len(numbered) - 1))
        index, count, payload = numbered[victim]
        altered = bytes([payload[0] ^ 1]) + payload[1:]
        broken = data.draw(
            st.sampled_from(
                [
                    numbered[:victim] + numbered[victim + 1 :],
                    [
                        *numbered[:victim],
                        (index, count, altered),
                        *numbered[victim + 1 :],
                    ],
                    [*numbered, (index, count, altered)],
                ]
            )
        )

        with pytest.raises(BlobError):
            reassemble(ref, broken)
