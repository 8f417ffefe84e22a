"""
Shared fixtures: one broker per test session, unique topic names per test.

The broker comes from ``KAFKA_BOOTSTRAP_SERVERS`` when set, else from a
testcontainers Kafka when a Docker engine answers, else from the embedded
Tansu binary on a random loopback port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from message_events.broker import EmbeddedBroker
from message_events.settings import Settings, load_settings

_BROKER_ENV = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")


def _docker_answers() -> bool:
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False
    with warnings.catch_warnings():
        # A refused connection leaves the client's socket to the collector.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker

            client = docker.from_env(timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:  # any failure at all means "no engine here"
            return False


@pytest.fixture(scope="session")
def bootstrap_servers() -> Iterator[str]:
    """The address of the broker every broker test of this session uses."""
    if _BROKER_ENV:
        yield _BROKER_ENV
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's shell out of the settings every test builds."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what ``logs.configure`` (called by the CLI) did to the root logger."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    kafka_level = logging.getLogger("aiokafka").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(kafka_level)


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A topic and group prefix no other test (or run) uses."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name)[:40].strip("-")
    return f"t-{name}-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def make_settings(bootstrap_servers: str, unique_prefix: str) -> Iterator[Any]:
    """Build settings for this test's broker and unique topics."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": bootstrap_servers,
            "topic_prefix": unique_prefix,
            "events_partitions": 4,
            "consumer_session_timeout_ms": 6000,
            "consumer_heartbeat_interval_ms": 500,
        }
        values.update(overrides)
        return load_settings(**values)

    with contextlib.nullcontext():
        yield build
