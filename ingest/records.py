"""
Turning callback items into Kafka records: events, or dead letters.

An item is routed when the processors will be able to read it: it is an
object, and ``CallbackEvent`` validates its bytes exactly as each processor
will (see ``schemas.events``). Anything else goes to the dead-letter topic
with a reason that names fields and error kinds, never field values, since
those may be phone numbers or message text.

Every item leaves as a record: one too large for a record (see
``ingest.blobs``) is dead-lettered with a reference to its bytes, kept in
chunks on the blobs topic, so the rest of its body can still be published.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import pydantic
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from ingest import blobs
from ingest.body import Item
from message_events.settings import DLQ_BLOBS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, Settings
from schemas.events import CallbackEvent
from schemas.identity import event_identity
from schemas.outputs import DeadLetter

# A reason lists this many field errors at most, so it stays short.
_MAX_REASONS = 5

# pydantic reports unreadable JSON as "Invalid JSON: <what> at line L column
# C", <what> being one of the parser's fixed phrases; anything else is not
# repeated, in case it ever quotes the input.
_JSON_ERROR = re.compile(r"Invalid JSON: ([a-zA-Z ,'-]{1,80} at line \d+ column \d+)")

_SURROGATE = re.compile("[\ud800-\udfff]")

Headers = list[tuple[str, bytes]]


@dataclasses.dataclass(frozen=True)
class Record:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers

    def size(self) -> int:
        """The size the producer weighs against its ``max_request_size``."""
        size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            self.key, self.value, self.headers
        )
        return size


@dataclasses.dataclass(frozen=True)
class Routed:
    """The records of one body, with what the metrics need to know of them."""

    records: list[Record]
    accepted_types: list[str]
    dead_letter_kinds: list[str]


def utc_now() -> str:
    """The current time as RFC 3339 UTC with milliseconds."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return now.replace("+00:00", "Z")


def route_items(
    items: Sequence[Item],
    *,
    settings: Settings,
    request_id: str,
    received_at: str,
) -> Routed:
    """The records for each item, in body order.

    An item gives one event or one dead letter; a dead letter too large for
    a record comes after the chunks holding the item's bytes.
    """
    routed = Routed([], [], [])
    limit = settings.producer_max_request_bytes
    for item in items:
        event, kind, reason = _validate(item)
        if event is not None:
            headers = [
                ("event-id", event_identity(event).event_id.encode()),
                ("event-type", event.type.encode()),
                ("received-at", received_at.encode()),
                ("request-id", request_id.encode()),
            ]
            key = event.message.id.encode()
            record = Record(settings.topic(EVENTS_TOPIC), key, item.raw, headers)
            if record.size() <= limit:
                routed.records.append(record)
                routed.accepted_types.append(event.type)
                continue
            kind = "too_large"
            reason = (
                f"item of {len(item.raw)} bytes is larger than one record may "
                "be (PRODUCER_MAX_REQUEST_BYTES)"
            )

        letter = DeadLetter(
            raw=item.text,
            error=reason,
            requestId=request_id,
            receivedAt=received_at,
        )
        record = Record(settings.topic(DLQ_TOPIC), None, letter.to_json(), [])
        if record.size() > limit:
            kind = "too_large"
            record = _by_reference(routed, item, letter, settings)
        routed.records.append(record)
        routed.dead_letter_kinds.append(kind)

    return routed


def _by_reference(
    routed: Routed, item: Item, letter: DeadLetter, settings: Settings
) -> Record:
    """Queue the item's chunks; return its dead letter pointing at them."""
    topic = settings.topic(DLQ_BLOBS_TOPIC)
    size = blobs.chunk_bytes(settings.producer_max_request_bytes)
    ref, chunks = blobs.split(item.raw, size, topic=topic)
    common = [
        (blobs.CHUNK_COUNT_HEADER, str(ref.chunks).encode()),
        ("request-id", letter.request_id.encode()),
        ("received-at", letter.received_at.encode()),
    ]
    for index, chunk in enumerate(chunks):
        headers = [(blobs.CHUNK_INDEX_HEADER, str(index).encode()), *common]
        routed.records.append(Record(topic, ref.sha256.encode(), chunk, headers))

    error = letter.error
    if "PRODUCER_MAX_REQUEST_BYTES" not in error:
        error = f"{error}; item of {ref.size} bytes kept by reference"
    by_ref = DeadLetter(
        raw=None,
        rawRef=ref,
        error=error,
        requestId=letter.request_id,
        receivedAt=letter.received_at,
    )
    return Record(settings.topic(DLQ_TOPIC), None, by_ref.to_json(), [])


def _validate(item: Item) -> tuple[CallbackEvent | None, str, str]:
    """The event, or None with a metric kind and a reason free of values."""
    if not isinstance(item.value, dict):
        return None, "not_object", "item is not a JSON object"
    try:
        # The bytes, not item.value: the processors read the bytes, and an
        # item they could not read must not reach them.
        return CallbackEvent.model_validate_json(item.raw), "", ""
    except pydantic.ValidationError as exc:
        if _kind(exc) == "unreadable" and _has_lone_surrogate(item.value):
            reason = "item holds an escaped lone surrogate, which is not Unicode"
            return None, "not_unicode", reason
        return None, _kind(exc), _reason(exc)


def _has_lone_surrogate(value: object) -> bool:
    """Whether a string anywhere in ``value``, keys included, has a surrogate."""
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            if _SURROGATE.search(current):
                return True
        elif isinstance(current, dict):
            pending.extend(current)
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return False


def _kind(exc: pydantic.ValidationError) -> str:
    types = {error["type"] for error in exc.errors()}
    if "json_invalid" in types:
        return "unreadable"
    return "missing_field" if types == {"missing"} else "invalid_field"


def _reason(exc: pydantic.ValidationError) -> str:
    # Only locations and pydantic's error type codes: both come from the
    # schema, while the error messages and inputs may echo the item.
    errors = exc.errors(include_url=False, include_input=False)
    if errors[0]["type"] == "json_invalid":
        found = _JSON_ERROR.fullmatch(errors[0]["msg"])
        what = found.group(1) if found else "invalid JSON"
        return f"item cannot be read as an event: {what}"
    parts = [
        f"{'.'.join(str(p) for p in error['loc'])}: {error['type']}"
        for error in errors[:_MAX_REASONS]
    ]
    if len(errors) > _MAX_REASONS:
        parts.append(f"and {len(errors) - _MAX_REASONS} more")
    return "invalid callback item: " + "; ".join(parts)
