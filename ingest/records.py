"""
Turning callback items into Kafka records: events, or dead letters.

An item is routed when it has the envelope every consumer relies on (see
``schemas.events``); anything else goes to the dead-letter topic with a reason
that names fields and error kinds, never field values, since those may be
phone numbers or message text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import pydantic

from ingest.body import Item
from message_events.settings import DLQ_TOPIC, EVENTS_TOPIC, Settings
from schemas.events import CallbackEvent
from schemas.identity import event_identity
from schemas.outputs import DeadLetter

# A reason lists this many field errors at most, so it stays short.
_MAX_REASONS = 5

Headers = list[tuple[str, bytes]]


@dataclasses.dataclass(frozen=True)
class Record:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


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
    """The record for each item, in body order."""
    routed = Routed([], [], [])
    for item in items:
        event, kind, reason = _validate(item.value)
        if event is None:
            letter = DeadLetter(
                raw=item.text,
                error=reason,
                requestId=request_id,
                receivedAt=received_at,
            )
            routed.records.append(
                Record(settings.topic(DLQ_TOPIC), None, letter.to_json(), [])
            )
            routed.dead_letter_kinds.append(kind)
            continue

        headers = [
            ("event-id", event_identity(event).event_id.encode()),
            ("event-type", event.type.encode()),
            ("received-at", received_at.encode()),
            ("request-id", request_id.encode()),
        ]
        key = event.message.id.encode()
        routed.records.append(
            Record(settings.topic(EVENTS_TOPIC), key, item.raw, headers)
        )
        routed.accepted_types.append(event.type)

    return routed


def _validate(value: object) -> tuple[CallbackEvent | None, str, str]:
    """The event, or None with a metric kind and a reason free of values."""
    if not isinstance(value, dict):
        return None, "not_object", "item is not a JSON object"
    try:
        return CallbackEvent.model_validate(value), "", ""
    except pydantic.ValidationError as exc:
        return None, _kind(exc), _reason(exc)


def _kind(exc: pydantic.ValidationError) -> str:
    missing = all(error["type"] == "missing" for error in exc.errors())
    return "missing_field" if missing else "invalid_field"


def _reason(exc: pydantic.ValidationError) -> str:
    # Only locations and pydantic's error type codes: both come from the
    # schema, while the error messages and inputs may echo the item.
    errors = exc.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(p) for p in error['loc'])}: {error['type']}"
        for error in errors[:_MAX_REASONS]
    ]
    if len(errors) > _MAX_REASONS:
        parts.append(f"and {len(errors) - _MAX_REASONS} more")
    return "invalid callback item: " + "; ".join(parts)
