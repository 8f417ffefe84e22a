"""
Realistic callback bodies built from the shared fixtures.

Every fixture item (but the invented type and the empty body) goes into one
pool; a body takes ten consecutive items of the pool, each with a message id
of its own, so every event of a run is unique and reaches one output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from schemas.events import CallbackEvent
from schemas.identity import EventIdentity, event_identity

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
EVENTS_PER_BODY = 10
_PLACEHOLDER = "@message-id@"
_RUN_CHARS = 8

# Not Bandwidth traffic: an invented type and an empty array.
_SKIPPED = frozenset(
    {"tricky_unrecognised_type_synthetic.json", "tricky_empty_array.json"}
)


class Event(NamedTuple):
    """One callback item: its bytes, Kafka key and headers, and its eventId."""

    raw: bytes
    key: bytes
    event_id: str
    event_type: str


class Body(NamedTuple):
    """One POST body and the events in it."""

    data: bytes
    events: list[Event]


def fixture_pool(folder: Path = FIXTURES) -> list[dict[str, Any]]:
    """Every item of every fixture body, in file order."""
    pool: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        if path.name in _SKIPPED:
            continue
        loaded = json.loads(path.read_text(encoding="utf-8"))
        pool.extend(loaded if isinstance(loaded, list) else [loaded])
    if not pool:
        msg = f"no fixture items in {folder}"
        raise FileNotFoundError(msg)
    return pool


def message_id(run: str, n: int) -> str:
    """A message id of Bandwidth's observed shape, unique per run and number.

    13 digits of epoch milliseconds, then 16 lowercase letters and digits.
    """
    if len(run) > _RUN_CHARS or not run.isalnum() or run != run.lower():
        msg = f"run must be up to {_RUN_CHARS} lowercase letters or digits: {run!r}"
        raise ValueError(msg)
    tail = f"{run}{n:0{16 - len(run)}x}"
    return f"{1772470000000 + n % 10**9:013d}{tail}"


class Template(NamedTuple):
    """A fixture item serialised around its message id, and its identity."""

    before: bytes
    after: bytes
    identity: EventIdentity

    def event(self, mid: str) -> Event:
        """The item with message id ``mid``."""
        raw = b"".join((self.before, mid.encode(), self.after))
        identity = self.identity._replace(message_id=mid)
        return Event(raw, mid.encode(), identity.event_id, identity.type)


def template(item: dict[str, Any]) -> Template:
    """Cut a fixture item around its message id; validated like the ingress."""
    copy = json.loads(json.dumps(item))
    copy["message"]["id"] = _PLACEHOLDER
    before, after = orjson.dumps(copy).split(_PLACEHOLDER.encode())
    identity = event_identity(CallbackEvent.model_validate(copy))
    return Template(before, after, identity)


def events(run: str, count: int, *, start: int = 0) -> Iterator[Event]:
    """``count`` unique events cycling through the fixture pool."""
    templates = [template(item) for item in fixture_pool()]
    for n in range(start, start + count):
        yield templates[n % len(templates)].event(message_id(run, n))


def bodies(run: str, count: int, *, start: int = 0) -> list[Body]:
    """``count`` bodies of ten unique events each."""
    made = list(events(run, count * EVENTS_PER_BODY, start=start))
    result = []
    for i in range(count):
        chunk = made[i * EVENTS_PER_BODY : (i + 1) * EVENTS_PER_BODY]
        data = b"[" + b",".join(e.raw for e in chunk) + b"]"
        result.append(Body(data, chunk))
    return result


def headers(event: Event) -> list[tuple[str, bytes]]:
    """The headers the ingress puts on an event (fixed times for the bench)."""
    return [
        ("event-id", event.event_id.encode()),
        ("event-type", event.event_type.encode()),
        ("received-at", b"2026-03-02T18:00:00.000Z"),
        ("request-id", b"0123456789abcdef0123456789abcdef"),
    ]
