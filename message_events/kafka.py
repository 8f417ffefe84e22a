"""
Kafka clients built from the settings, and the translation of aiokafka errors.

aiokafka is untyped; this module is where its objects are created, so the rest
of the code gets them with the options this project relies on (acks=all,
manual commits, earliest reset).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError

from message_events.errors import BrokerError, PublishError, PublishTimeout
from message_events.settings import Settings


def bootstrap(settings: Settings) -> str:
    """The bootstrap servers, which ``run`` fills in for the embedded broker."""
    if not settings.kafka_bootstrap_servers:
        msg = "KAFKA_BOOTSTRAP_SERVERS is not set"
        raise BrokerError(msg, key="KAFKA_BOOTSTRAP_SERVERS")
    return settings.kafka_bootstrap_servers


def new_producer(settings: Settings, role: str) -> Any:
    """A producer that waits for every in-sync replica (acks=all).

    Idempotence stays off: the embedded broker does not implement it, and the
    dedup downstream absorbs the duplicates a retried send can cause.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap(settings),
        client_id=f"{settings.kafka_client_id}.{role}",
        acks="all",
        linger_ms=settings.producer_linger_ms,
        max_request_size=settings.producer_max_request_bytes,
        # A processor sends a whole poll's outputs and entries per partition
        # at once; aiokafka's 16 KiB default cut them into many small
        # requests (make bench: delivery 17.7k -> 22.9k events/s at 256 KiB).
        max_batch_size=256 * 1024,
        request_timeout_ms=max(settings.publish_deadline_ms, 5000),
        enable_idempotence=False,
    )


def new_consumer(settings: Settings, group_id: str | None, role: str) -> Any:
    """A consumer with manual commits that starts at the earliest record."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap(settings),
        client_id=f"{settings.kafka_client_id}.{role}",
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.consumer_max_poll_records,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer_heartbeat_interval_ms,
        max_poll_interval_ms=settings.consumer_max_poll_interval_ms,
        fetch_max_wait_ms=50,
        isolation_level="read_uncommitted",
    )


def new_admin(settings: Settings) -> Any:
    """An admin client for topic management."""
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap(settings),
        client_id=f"{settings.kafka_client_id}.admin",
    )


@contextlib.contextmanager
def translated(
    action: str,
    *,
    topic: str | None = None,
    partition: int | None = None,
    request_id: str | None = None,
) -> Iterator[None]:
    """Re-raise aiokafka errors inside the block as this project's errors."""
    try:
        yield
    except KafkaTimeoutError as exc:
        msg = f"{action}: timed out"
        raise PublishTimeout(
            msg, topic=topic, partition=partition, request_id=request_id
        ) from exc
    except KafkaError as exc:
        msg = f"{action}: {type(exc).__name__}: {exc}"
        raise PublishError(
            msg, topic=topic, partition=partition, request_id=request_id
        ) from exc
