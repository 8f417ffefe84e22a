"""
The envelope of a Bandwidth messaging callback item.

Only what routing and identity need is validated: ``type``, ``time``, the
top-level ``to`` and ``message.id``, plus the types of the fields the
processors read. Everything else is allowed and kept, because Bandwidth adds
types and fields over time and the item travels on as received.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
)

INBOUND_TYPES = frozenset(
    {"message-received", "suggestion-response", "requested-location-response"}
)
DELIVERY_TYPES = frozenset(
    {"message-sent", "message-delivered", "message-failed", "message-read"}
)
MMS_TYPES = frozenset({"message-sending", "message-queued"})


def _rfc3339(value: str) -> str:
    """Accept an RFC 3339 timestamp with an offset or ``Z``; keep it as sent.

    The text, not the parsed instant, is part of the event identity: a retried
    item repeats it byte for byte.
    """
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        msg = "not an RFC 3339 timestamp"
        raise ValueError(msg) from None
    if parsed.tzinfo is None:
        msg = "timestamp has no UTC offset"
        raise ValueError(msg)
    return value


Timestamp = Annotated[StrictStr, AfterValidator(_rfc3339)]


class CallbackMessage(BaseModel):
    """The ``message`` object of a callback item."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: StrictStr = Field(min_length=1, max_length=256)
    direction: StrictStr | None = None
    owner: StrictStr | None = None
    from_: StrictStr | None = Field(default=None, alias="from")
    to: list[StrictStr] | None = None
    text: StrictStr | None = None
    media: list[StrictStr] | None = None
    segment_count: StrictInt | None = Field(default=None, alias="segmentCount")
    tag: StrictStr | None = None
    channel: StrictStr | None = None
    time: StrictStr | None = None


class CallbackEvent(BaseModel):
    """One item of a callback body; the type set is open."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: StrictStr = Field(min_length=1, max_length=128)
    time: Timestamp
    to: StrictStr = Field(min_length=1)
    description: StrictStr | None = None
    error_code: StrictInt | None = Field(default=None, alias="errorCode")
    carrier_name: StrictStr | None = Field(default=None, alias="carrierName")
    event_time: StrictStr | None = Field(default=None, alias="eventTime")
    message: CallbackMessage
