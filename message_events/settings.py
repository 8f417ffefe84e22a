"""
One settings object, read from the environment once at start.

Every field maps to the environment variable of the same name in upper case
(``publish_deadline_ms`` is ``PUBLISH_DEADLINE_MS``). Units are part of the
names. ``load_settings`` turns pydantic's validation errors into a
``ConfigError`` that names the offending variable.
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from message_events.errors import ConfigError

EVENTS_TOPIC = "bandwidth.messaging.events"
DLQ_TOPIC = "bandwidth.messaging.events.dlq"
INBOUND_TOPIC = "messaging.inbound"
DELIVERY_TOPIC = "messaging.delivery-status"
MMS_TOPIC = "messaging.mms-progress"
PROCESSORS = ("inbound", "delivery", "mms")


class Settings(BaseSettings):
    """Runtime configuration of every command; see the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="host:port list of the Kafka cluster; unset starts the "
        "embedded broker under `run`",
    )
    kafka_client_id: str = "message-events"
    topic_prefix: str = Field(
        default="",
        description="prepended to every topic and group name (tests, tenancy)",
    )
    events_partitions: int = Field(default=12, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=10)
    dedup_window_seconds: int = Field(default=48 * 3600, ge=60)

    callback_username: str | None = None
    callback_password: SecretStr | None = None
    callback_extra_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='JSON object {"username": "password"} of further pairs',
    )
    auth_realm: str = "message-events"

    # A container listens on all interfaces; set 127.0.0.1 for a laptop.
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=0, le=65535)
    processor_http_port: int = Field(default=9090, ge=0, le=65535)
    publish_deadline_ms: int = Field(default=8000, ge=100, le=9500)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    shutdown_drain_seconds: float = Field(default=8.0, ge=0, le=60)

    producer_linger_ms: int = Field(default=2, ge=0, le=1000)
    producer_max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    consumer_max_poll_records: int = Field(default=1000, ge=1)
    consumer_session_timeout_ms: int = Field(default=10000, ge=1000)
    consumer_heartbeat_interval_ms: int = Field(default=3000, ge=100)
    consumer_max_poll_interval_ms: int = Field(default=300000, ge=1000)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @model_validator(mode="after")
    def _password_comes_with_username(self) -> Settings:
        if (self.callback_username is None) != (self.callback_password is None):
            msg = "CALLBACK_USERNAME and CALLBACK_PASSWORD are set together"
            raise ValueError(msg)
        return self

    def topic(self, name: str) -> str:
        """The full name of a topic, with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    def group_id(self, processor: str) -> str:
        """The consumer group of a processor."""
        return f"{self.topic_prefix}message-events.{processor}"

    def dedup_topic(self, processor: str) -> str:
        """The compacted topic holding a processor's dedup and ordering state."""
        return f"{self.topic_prefix}message-events.{processor}.dedup"

    def credentials(self) -> dict[str, str]:
        """Every accepted username/password pair."""
        pairs = {
            u: p.get_secret_value() for u, p in self.callback_extra_credentials.items()
        }
        if self.callback_username is not None and self.callback_password is not None:
            pairs[self.callback_username] = self.callback_password.get_secret_value()
        return pairs


def load_settings(**overrides: object) -> Settings:
    """Read the environment (and any explicit overrides) into ``Settings``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        key = "_".join(str(part) for part in first["loc"]).upper() or "settings"
        msg = f"invalid setting {key}: {first['msg']}"
        raise ConfigError(msg, key=key) from exc
