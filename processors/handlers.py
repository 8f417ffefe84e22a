"""
The three processors' decisions: which events they take and what they publish.

A handler is pure: given an event and the partition's state it returns a
``Decision``; the runner publishes, records and commits.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, ClassVar, Protocol

from message_events import settings as names
from processors.state import PartitionState, transition
from schemas.errorcodes import error_category, retry_advice
from schemas.events import DELIVERY_TYPES, INBOUND_TYPES, MMS_TYPES, CallbackEvent
from schemas.identity import EventIdentity
from schemas.outputs import DeliveryStatus, InboundMessage, MmsProgress


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to do with one event.

    ``outcome`` is the metrics label: published, unchanged, regression,
    contradiction or anomaly. ``key``/``value`` are the output record, if any;
    ``status_key``/``status`` the status to remember, if it changed.
    """

    outcome: str
    key: bytes | None = None
    value: bytes | None = None
    status_key: str | None = None
    status: str | None = None
    anomaly: str | None = None


class Handler(Protocol):
    """One processor's rules."""

    @property
    def name(self) -> str:
        """The processor's name: inbound, delivery or mms."""
        ...

    @property
    def output_topic(self) -> str:
        """The output topic's name, without the prefix."""
        ...

    def handle(
        self,
        event: CallbackEvent,
        identity: EventIdentity,
        state: PartitionState,
        now: int,
        received_at: str | None,
    ) -> Decision | None:
        """Decide on an event; ``None`` when this processor does not take it."""
        ...


def conversation_id(participants: list[str]) -> str:
    """A digest of the set of participants, independent of order and copies."""
    text = "\x1f".join(sorted(set(participants)))
    return hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=16
    ).hexdigest()


def _extra_dict(model: Any, name: str) -> dict[str, Any] | None:
    value = (model.model_extra or {}).get(name)
    return value if isinstance(value, dict) else None


class InboundHandler:
    """Messages and RBM responses from end users, never our own outbound."""

    name: ClassVar[str] = "inbound"
    output_topic: ClassVar[str] = names.INBOUND_TOPIC

    def handle(
        self,
        event: CallbackEvent,
        identity: EventIdentity,
        state: PartitionState,
        now: int,
        received_at: str | None,
    ) -> Decision | None:
        if event.type not in INBOUND_TYPES:
            return None
        message = event.message
        if message.direction != "in":
            # Reacting to our own outbound event as inbound would start a loop.
            return Decision("anomaly", anomaly="outbound-as-inbound")
        sender = message.from_ or ""
        recipients = list(message.to) if message.to else [event.to]
        record = InboundMessage(
            event_id=identity.event_id,
            message_id=message.id,
            type=event.type,
            time=event.time,
            from_=sender,
            to=recipients,
            owner=message.owner or event.to,
            text=message.text or "",
            media=list(message.media or []),
            segment_count=message.segment_count,
            channel=message.channel,
            conversation_id=conversation_id([sender, *recipients]),
            suggestion_response=_extra_dict(message, "suggestionResponse"),
            location_response=_extra_dict(message, "locationResponse"),
            received_at=received_at,
        )
        return Decision("published", key=message.id.encode(), value=record.to_json())


class _StatusHandler:
    """Shared rule of the status processors: the latest status never regresses."""

    name: ClassVar[str]
    output_topic: ClassVar[str]
    types: ClassVar[frozenset[str]]

    def status_of(self, event_type: str) -> str:
        return event_type.removeprefix("message-")

    def record(
        self, event: CallbackEvent, identity: EventIdentity, status: str
    ) -> bytes:
        raise NotImplementedError

    def handle(
        self,
        event: CallbackEvent,
        identity: EventIdentity,
        state: PartitionState,
        now: int,
        received_at: str | None,
    ) -> Decision | None:
        if event.type not in self.types:
            return None
        if event.message.direction == "in":
            return Decision("anomaly", anomaly="inbound-status")
        status = self.status_of(event.type)
        key = f"{event.message.id}/{event.to}"
        step = transition(state.status(key, now), status)
        if step == "advance":
            value = self.record(event, identity, status)
            return Decision(
                "published",
                key=key.encode(),
                value=value,
                status_key=key,
                status=status,
            )
        if step == "contradiction":
            return Decision(step, anomaly="contradicting-terminal")
        if step == "regression":
            return Decision(step, anomaly="regression-refused")
        return Decision(step)


def _status_fields(
    event: CallbackEvent, identity: EventIdentity, status: str
) -> dict[str, Any]:
    """What every status record carries, whatever the processor."""
    return {
        "event_id": identity.event_id,
        "message_id": event.message.id,
        "type": event.type,
        "time": event.time,
        "recipient": event.to,
        "status": status,
        "tag": event.message.tag,
    }


class DeliveryHandler(_StatusHandler):
    """Delivery receipts: sent, delivered, failed, read."""

    name = "delivery"
    output_topic = names.DELIVERY_TOPIC
    types = DELIVERY_TYPES

    def record(
        self, event: CallbackEvent, identity: EventIdentity, status: str
    ) -> bytes:
        code = event.error_code if status == "failed" else None
        return DeliveryStatus(
            **_status_fields(event, identity, status),
            error_code=code,
            error_category=error_category(code) if code is not None else None,
            retry_advice=retry_advice(code) if code is not None else None,
            carrier_name=event.carrier_name,
            event_time=event.event_time,
        ).to_json()


class MmsHandler(_StatusHandler):
    """MMS progress before delivery: sending and the legacy queued."""

    name = "mms"
    output_topic = names.MMS_TOPIC
    types = MMS_TYPES

    def record(
        self, event: CallbackEvent, identity: EventIdentity, status: str
    ) -> bytes:
        return MmsProgress(**_status_fields(event, identity, status)).to_json()


HANDLERS: dict[str, type[InboundHandler] | type[DeliveryHandler] | type[MmsHandler]] = {
    "inbound": InboundHandler,
    "delivery": DeliveryHandler,
    "mms": MmsHandler,
}
