"""Pydantic models of the callback events and of the records we publish."""

from schemas.events import CallbackEvent, CallbackMessage
from schemas.identity import EventIdentity, event_identity
from schemas.outputs import (
    DeadLetter,
    DeliveryStatus,
    InboundMessage,
    MmsProgress,
    RawRef,
)

__all__ = [
    "CallbackEvent",
    "CallbackMessage",
    "DeadLetter",
    "DeliveryStatus",
    "EventIdentity",
    "InboundMessage",
    "MmsProgress",
    "RawRef",
    "event_identity",
]
