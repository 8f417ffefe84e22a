"""
Records this product publishes; their JSON Schemas are generated into
``schemas/*.schema.json`` by ``python -m schemas``.

Names are camelCase on the wire. Every output carries ``eventId``,
``messageId``, ``type`` and ``time`` (the event's own time).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from schemas.errorcodes import ErrorCategory, RetryAdvice


class _Record(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
    )

    event_id: str = Field(description="digest of the event identity, 32 hex")
    message_id: str = Field(description="Bandwidth message.id")
    type: str = Field(description="the callback type")
    time: str = Field(description="the event's time, RFC 3339, as sent")

    def to_json(self) -> bytes:
        """The record's wire form."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class InboundMessage(_Record):
    """A message an end user sent to one of our numbers (one copy per owner)."""

    from_: str = Field(alias="from", description="the sender")
    to: list[str] = Field(description="all recipients of the message")
    owner: str = Field(description="our number (or RBM agent) that got this copy")
    text: str = Field(description="the message text; may be empty for MMS")
    media: list[str] = Field(default_factory=list, description="media URLs")
    segment_count: int | None = None
    channel: str | None = None
    conversation_id: str = Field(
        description="digest of the participants (from plus message.to): the "
        "same for every copy and every message of one conversation"
    )
    suggestion_response: dict[str, Any] | None = None
    location_response: dict[str, Any] | None = None
    received_at: str | None = Field(
        default=None, description="when the ingress received the callback"
    )


class DeliveryStatus(_Record):
    """The latest delivery state of one message for one recipient."""

    recipient: str = Field(description="the recipient this status is about")
    status: Literal["sent", "delivered", "failed", "read"]
    error_code: int | None = None
    error_category: ErrorCategory | None = None
    retry_advice: RetryAdvice | None = None
    tag: str | None = Field(default=None, description="echo of the send tag")
    carrier_name: str | None = None
    event_time: str | None = Field(default=None, description="RBM read time")


class MmsProgress(_Record):
    """The latest in-flight state of an outbound MMS for one recipient."""

    recipient: str
    status: Literal["queued", "sending"]
    tag: str | None = None


class RawRef(BaseModel):
    """Where the bytes of an item too large for one record are kept."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: str = Field(description="the topic holding the item's chunks")
    sha256: str = Field(
        description="hex SHA-256 of the item's bytes; the key of every chunk"
    )
    size: int = Field(description="the item's length in bytes")
    chunks: int = Field(
        description="how many chunk records hold it, in order of their "
        "`chunk-index` header (0 to `chunk-count` - 1)"
    )


class DeadLetter(BaseModel):
    """An item the ingress could not route, kept with the reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    raw: str | None = Field(
        description="the item's JSON text as received; null when the item is "
        "too large for one record, its bytes then being where `rawRef` says"
    )
    raw_ref: RawRef | None = Field(
        default=None,
        alias="rawRef",
        description="present only for an item too large for one record",
    )
    error: str = Field(description="why it could not be routed")
    request_id: str = Field(alias="requestId")
    received_at: str = Field(alias="receivedAt")

    def to_json(self) -> bytes:
        """The record's wire form; ``rawRef`` only when there is one."""
        exclude = {"raw_ref"} if self.raw_ref is None else None
        return self.model_dump_json(by_alias=True, exclude=exclude).encode()
