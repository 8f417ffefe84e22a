"""
JSON Schemas of the records on each output topic, generated from the models.

The files are committed; ``tests/test_schemas.py`` fails when they drift.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from message_events import settings as names
from schemas.events import CallbackEvent
from schemas.outputs import DeadLetter, DeliveryStatus, InboundMessage, MmsProgress

# Topic (without prefix) -> model of its values.
TOPIC_MODELS: dict[str, type[BaseModel]] = {
    names.EVENTS_TOPIC: CallbackEvent,
    names.DLQ_TOPIC: DeadLetter,
    names.INBOUND_TOPIC: InboundMessage,
    names.DELIVERY_TOPIC: DeliveryStatus,
    names.MMS_TOPIC: MmsProgress,
}


def schema_file(topic: str) -> str:
    """The file name holding a topic's value schema."""
    return f"{topic}.schema.json"


def render(topic: str) -> str:
    """A topic's value schema as stable, indented JSON text."""
    model = TOPIC_MODELS[topic]
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:message-events:topic:{topic}"
    schema["x-topic"] = topic
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """Every generated file's name and text: value schemas and AsyncAPI."""
    from schemas import asyncapi

    files = {schema_file(topic): render(topic) for topic in TOPIC_MODELS}
    files[asyncapi.ASYNCAPI_FILE] = asyncapi.render()
    return files
