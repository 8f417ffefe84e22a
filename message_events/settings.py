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
DLQ_BLOBS_TOPIC = "bandwidth.messaging.events.dlq.blobs"
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
        description="host:port list of the Kafka cluster; when unset, `run` "
        "starts the embedded broker",
    )
    kafka_client_id: str = Field(
        default="message-events", description="client id prefix seen by the broker"
    )
    topic_prefix: str = Field(
        default="",
        description="prepended to every topic and group name (tests, tenancy)",
    )
    events_partitions: int = Field(
        default=12,
        ge=1,
        le=1000,
        description="partitions of the events topic and of every output and "
        "dedup topic; the most instances a processor can use",
    )
    replication_factor: int = Field(
        default=1, ge=1, le=10, description="replicas of every topic (3 in prod)"
    )
    dedup_window_seconds: int = Field(
        default=48 * 3600,
        ge=60,
        description="how long dedup and status entries live, in memory and in "
        "the dedup topics (`retention.ms`); covers Bandwidth's 24 h of retries",
    )

    callback_username: str | None = Field(
        default=None, description="Basic auth username Bandwidth sends"
    )
    callback_password: SecretStr | None = Field(
        default=None, description="its password (Secret)"
    )
    callback_extra_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='further pairs as a JSON object `{"user": "password"}`, '
        "e.g. separate inbound and outbound credentials (Secret)",
    )
    auth_realm: str = Field(
        default="message-events", description="realm of the 401 challenge"
    )

    # A container listens on all interfaces; set 127.0.0.1 on a laptop.
    http_host: str = Field(default="0.0.0.0", description="HTTP listen address")
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="ingress port (`--port` wins)"
    )
    processor_http_port: int = Field(
        default=9090,
        ge=0,
        le=65535,
        description="health and metrics port of `process` (`--port` wins)",
    )
    publish_deadline_ms: int = Field(
        default=8000,
        ge=100,
        le=9500,
        description="time for all items of a body to be acknowledged before "
        "the ingress answers 503; below Bandwidth's 10 s",
    )
    retry_after_seconds: int = Field(
        default=5, ge=1, le=3600, description="`Retry-After` of a 503"
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="largest callback body accepted; larger gets 413",
    )
    body_read_timeout_ms: int = Field(
        default=2000,
        ge=100,
        le=9500,
        description="longest time to receive a callback body; a slower client "
        "gets 408 and its connection is closed, nothing is published",
    )
    shutdown_drain_seconds: float = Field(
        default=8.0,
        ge=0,
        le=60,
        description="how long a stopping ingress lets requests in flight finish",
    )

    producer_linger_ms: int = Field(
        default=2, ge=0, le=1000, description="producer batching delay"
    )
    producer_max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="largest produce request; an item whose record would be "
        "larger is dead-lettered by reference, its bytes kept in chunks of half "
        "this size on the blobs topic",
    )
    consumer_max_poll_records: int = Field(
        default=1000, ge=1, description="most records a processor handles per batch"
    )
    consumer_session_timeout_ms: int = Field(
        default=10000,
        ge=1000,
        description="a silent member is dropped from its group after this",
    )
    consumer_heartbeat_interval_ms: int = Field(
        default=3000, ge=100, description="group heartbeat period"
    )
    consumer_max_poll_interval_ms: int = Field(
        default=300000,
        ge=1000,
        description="longest time one batch may take before the member is "
        "considered stuck",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="log level"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="`json` lines, `console` text, or `auto`: text on a terminal",
    )

    @model_validator(mode="after")
    def _password_comes_with_username(self) -> Settings:
        if (self.callback_username is None) != (self.callback_password is None):
            msg = "CALLBACK_USERNAME and CALLBACK_PASSWORD are set together"
            raise ValueError(msg)
        pairs = [(self.callback_username, self.callback_password)]
        pairs += list(self.callback_extra_credentials.items())
        for user, password in pairs:
            if user == "" or (password is not None and not password.get_secret_value()):
                # An empty pair would let `Authorization: Basic Og==` in.
                msg = "callback usernames and passwords must not be empty"
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
