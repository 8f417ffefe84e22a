"""
The OpenAPI 3.1 description of the ingress, built from its models.

The request body schema is ``schemas.events.CallbackEvent`` and the answers
are the models of ``ingest.contract``, so the description follows the code.
The ingress serves it at ``GET /openapi.json``; ``python -m ingest.openapi``
writes the committed copy, ``ingest/openapi.json``, which a test keeps in
sync.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import models_json_schema

from ingest.contract import Accepted, Health, Readiness, Refused
from message_events.settings import Settings
from schemas.asyncapi import VERSION
from schemas.events import CallbackEvent

OPENAPI_FILE = Path(__file__).with_name("openapi.json")

_REF = "#/components/schemas/{model}"

_DESCRIPTION = """\
Bandwidth's messaging callbacks into Kafka. Bandwidth retries anything but a \
2xx for 24 hours and keeps nothing after a 2xx, so `200` is answered only \
once every item is acknowledged by Kafka, as an event or as a dead letter, \
and every other answer publishes nothing of the body.

Numbers in this description (body limit, deadlines) are the defaults of the \
settings that change them."""

_CALLBACK_DESCRIPTION = """\
A JSON array of callback items, or one object taken as a one-item array.

The body is read as UTF-8 JSON (RFC 8259) whatever `Content-Type` and its \
charset say; one leading byte order mark is dropped. Items are published as \
the exact bytes received, keyed by `message.id`, with headers `event-id`, \
`event-type`, `received-at` and `request-id`.

An item the processors could not read (not an object, a missing or \
mistyped field, an escaped lone surrogate such as `"\\ud800"`, nesting \
deeper than 200) goes to the dead-letter topic with the reason and the body \
still gets `200`. So does an item too large for one Kafka record, its bytes \
kept in chunks on the blobs topic and referenced from its dead letter. \
Duplicate keys are allowed; the last one wins."""


def _schemas() -> dict[str, Any]:
    _, document = models_json_schema(
        [
            (CallbackEvent, "validation"),
            (Accepted, "serialization"),
            (Refused, "serialization"),
            (Health, "serialization"),
            (Readiness, "serialization"),
        ],
        by_alias=True,
        ref_template=_REF,
    )
    schemas: dict[str, Any] = document["$defs"]
    return schemas


def _ref(model: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=model)}


def _json_content(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _refused(description: str, **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
        "content": _json_content("Refused"),
    }
    response["headers"].update(headers)
    return response


def _callback_operation(settings: Settings) -> dict[str, Any]:
    items = {"type": "array", "items": _ref("CallbackEvent")}
    body_schema = {"oneOf": [items, _ref("CallbackEvent")]}
    request_id = {"$ref": "#/components/headers/RequestId"}
    return {
        "operationId": "postMessagingCallback",
        "summary": "Take a body of Bandwidth messaging callbacks into Kafka",
        "description": _CALLBACK_DESCRIPTION,
        "security": [{"callbackBasic": []}],
        "parameters": [
            {
                "name": "X-Request-Id",
                "in": "header",
                "required": False,
                "description": "kept as the request id when it matches "
                "`[A-Za-z0-9._-]{1,64}`, else replaced by a new one",
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {
            "required": True,
            "description": f"at most {settings.max_body_bytes} bytes (MAX_BODY_BYTES)",
            "content": {
                "application/json": {"schema": body_schema},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                },
            },
        },
        "responses": {
            "200": {
                "description": "every item acknowledged by Kafka, as an event "
                "or a dead letter",
                "headers": {"X-Request-Id": request_id},
                "content": _json_content("Accepted"),
            },
            "400": _refused(
                "not UTF-8, not JSON, a JSON scalar, nested or sized past the "
                "parser's limits, or a body that could not be read (broken "
                "chunked framing or Content-Encoding); nothing published"
            ),
            "401": _refused(
                "no or wrong credentials; nothing of the body is read. "
                "Bandwidth sends its first try without credentials and "
                "repeats it after this challenge",
                **{
                    "WWW-Authenticate": {
                        "required": True,
                        "description": "the Basic challenge with the realm "
                        "(AUTH_REALM) and charset UTF-8",
                        "schema": {"type": "string", "pattern": "^Basic realm="},
                    }
                },
            ),
            "408": _refused(
                f"the body did not arrive within {settings.body_read_timeout_ms}"
                " ms (BODY_READ_TIMEOUT_MS); the connection is closed, nothing "
                "published"
            ),
            "413": _refused(
                f"the body is over {settings.max_body_bytes} bytes "
                "(MAX_BODY_BYTES); refused before it is read when its length "
                "is declared; nothing published"
            ),
            "503": _refused(
                "Kafka did not acknowledge every item within "
                f"{settings.publish_deadline_ms} ms (PUBLISH_DEADLINE_MS); "
                "some items may be on Kafka, and the retry is absorbed by the "
                "processors' de-duplication",
                **{
                    "Retry-After": {
                        "required": True,
                        "description": "seconds (RETRY_AFTER_SECONDS)",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    }
                },
            ),
        },
    }


def _get(summary: str, responses: dict[str, Any], operation_id: str) -> dict[str, Any]:
    for response in responses.values():
        response["headers"] = {
            "X-Request-Id": {"$ref": "#/components/headers/RequestId"}
        }
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def build() -> dict[str, Any]:
    """The OpenAPI document for the default settings."""
    # Defaults only: the shell's environment must not change the document.
    settings = Settings.model_construct()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "message-events ingress",
            "version": VERSION,
            "description": _DESCRIPTION,
        },
        "paths": {
            "/callbacks/messaging": {"post": _callback_operation(settings)},
            "/healthz": _get(
                "Liveness: the process answers",
                {"200": {"description": "alive", "content": _json_content("Health")}},
                "getHealth",
            ),
            "/readyz": _get(
                "Readiness: the producer reaches the broker",
                {
                    "200": {
                        "description": "ready",
                        "content": _json_content("Readiness"),
                    },
                    "503": {
                        "description": "the broker does not answer",
                        "content": _json_content("Readiness"),
                    },
                },
                "getReadiness",
            ),
            "/metrics": _get(
                "Prometheus metrics of the process",
                {
                    "200": {
                        "description": "the text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                "getMetrics",
            ),
            "/openapi.json": _get(
                "This description",
                {
                    "200": {
                        "description": "the OpenAPI 3.1 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
                "getOpenApi",
            ),
        },
        "components": {
            "securitySchemes": {
                "callbackBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "a pair of CALLBACK_USERNAME/CALLBACK_PASSWORD "
                    "or CALLBACK_EXTRA_CREDENTIALS, UTF-8; the password is "
                    "everything after the first colon",
                }
            },
            "headers": {
                "RequestId": {
                    "required": True,
                    "description": "the request id, also in the JSON answer "
                    "and on every record of the body",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
                }
            },
            "schemas": _schemas(),
        },
    }


def render() -> str:
    """The document as stable, indented JSON text."""
    return json.dumps(build(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@functools.cache
def document_bytes() -> bytes:
    """What ``GET /openapi.json`` answers, built once per process."""
    return render().encode()


def main() -> int:
    """Write the committed copy next to this module."""
    OPENAPI_FILE.write_text(render(), encoding="utf-8")
    print(f"wrote ingest/{OPENAPI_FILE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
