"""
Event identity: what makes two callback items the same event.

Identity is type + message id + top-level ``to`` + event time, plus
``errorCode`` when present. The message id alone is not enough: every
recipient of an outbound group message shares it, and one message has several
events. The ``eventId`` published everywhere is a digest of the identity, so a
retried item gets the same id at ingress and in every processor.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from schemas.events import CallbackEvent

_SEPARATOR = "\x1f"


class EventIdentity(NamedTuple):
    """The fields that identify one event."""

    type: str
    message_id: str
    to: str
    time: str
    error_code: int | None

    def digest(self) -> bytes:
        """16 bytes that stand for the identity in state and keys."""
        code = "" if self.error_code is None else str(self.error_code)
        text = _SEPARATOR.join((self.type, self.message_id, self.to, self.time, code))
        return hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), digest_size=16
        ).digest()

    @property
    def event_id(self) -> str:
        """The identity as 32 hex characters."""
        return self.digest().hex()


def event_identity(event: CallbackEvent) -> EventIdentity:
    """The identity of a validated callback item."""
    return EventIdentity(
        event.type, event.message.id, event.to, event.time, event.error_code
    )
