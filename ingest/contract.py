"""
The JSON bodies the ingress answers with, as models.

The handlers build their answers from these models and ``ingest.openapi``
describes the answers with their JSON Schemas, so the served description
cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    """A JSON answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> bytes:
        """The answer's body."""
        return self.model_dump_json(by_alias=True).encode()


class Accepted(Answer):
    """Every item of the body is on Kafka, as an event or a dead letter."""

    accepted: int = Field(ge=0, description="items published as events")
    dead_lettered: int = Field(
        alias="deadLettered", ge=0, description="items sent to the dead-letter topic"
    )
    request_id: str = Field(alias="requestId", description="as in X-Request-Id")


class Refused(Answer):
    """Why the body was not taken; nothing of it was published."""

    error: str = Field(
        description="what was wrong, naming at most a position, never content"
    )
    request_id: str = Field(alias="requestId", description="as in X-Request-Id")


class Health(Answer):
    """The process is alive."""

    status: Literal["ok"]


class Readiness(Answer):
    """Whether the producer reaches the broker right now."""

    status: Literal["ready", "unavailable"]
