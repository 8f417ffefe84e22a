"""
An AsyncAPI 3.0 document of every topic: key, value schema, cleanup policy
and writer, generated from the topic declarations and the models.

Written to ``schemas/asyncapi.json`` by ``python -m schemas``; a test keeps
the committed file in sync.
"""

from __future__ import annotations

import json
import re
from typing import Any

from message_events import settings as names
from message_events.settings import Settings
from message_events.topics import declared_topics
from schemas.generate import TOPIC_MODELS

ASYNCAPI_FILE = "asyncapi.json"
VERSION = "0.1.0"

_DEDUP_PAYLOAD = {
    "type": "string",
    "description": "ASCII: an expiry in epoch seconds (`e` keys), "
    "`<status> <expiry>` (`s` keys) or an output offset (the `m` key); "
    "internal to the processor that writes it",
}


# Topics whose values are bytes, not a model: their payload and content type.
_BYTES_PAYLOADS = {
    names.DLQ_BLOBS_TOPIC: (
        "application/octet-stream",
        {
            "type": "string",
            "description": "one chunk of the bytes of a dead-lettered item too "
            "large for one record; headers `chunk-index` and `chunk-count`; "
            "the dead letter's `rawRef` names the key, size and chunk count",
        },
    ),
}


def _ident(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", topic).strip("_")


def _payload(topic: str) -> dict[str, Any]:
    model = TOPIC_MODELS.get(topic)
    if topic in _BYTES_PAYLOADS:
        return dict(_BYTES_PAYLOADS[topic][1])
    if model is None:
        return dict(_DEDUP_PAYLOAD)
    return model.model_json_schema(by_alias=True, mode="serialization")


def _content_type(topic: str) -> str:
    if topic in _BYTES_PAYLOADS:
        return _BYTES_PAYLOADS[topic][0]
    return "application/json" if topic in TOPIC_MODELS else "text/plain"


def build() -> dict[str, Any]:
    """The AsyncAPI document for the default settings."""
    # Defaults only: the shell's environment must not change the document.
    settings = Settings.model_construct()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in declared_topics(settings):
        ident = _ident(spec.name)
        config: dict[str, Any] = {
            "cleanup.policy": spec.cleanup_policy.split(","),
        }
        if "retention.ms" in spec.config:
            config["retention.ms"] = int(spec.config["retention.ms"])
        messages[ident] = {
            "name": ident,
            "contentType": _content_type(spec.name),
            "payload": _payload(spec.name),
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": spec.key.strip("`")},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        channels[ident] = {
            "address": spec.name,
            "description": (
                f"{spec.value.strip('`')}; written by `message-events {spec.writer}`"
            ),
            "messages": {ident: {"$ref": f"#/components/messages/{ident}"}},
            "bindings": {
                "kafka": {
                    "topic": spec.name,
                    "partitions": spec.partitions,
                    "topicConfiguration": config,
                    "bindingVersion": "0.5.0",
                }
            },
        }
        operations[f"write_{ident}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{ident}"},
            "summary": f"`message-events {spec.writer}` publishes here",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "message-events",
            "version": VERSION,
            "description": "Bandwidth messaging callbacks as de-duplicated Kafka "
            "streams. Topic names take the TOPIC_PREFIX setting in front.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "kafka:9092",
                "protocol": "kafka",
                "description": "the cluster named by KAFKA_BOOTSTRAP_SERVERS",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> str:
    """The document as stable, indented JSON text."""
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
