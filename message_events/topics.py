"""
Every topic of the product, declared once, and the code that creates them.

Output and dedup topics have as many partitions as the input topic: a
processor writes a record to the partition number of the input record that
caused it, so one input partition's outputs and state sit together.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from message_events import settings as names
from message_events.errors import TopicError
from message_events.kafka import new_admin
from message_events.settings import Settings

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000


@dataclasses.dataclass(frozen=True)
class TopicSpec:
    """A topic's name, partitions and configuration."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str]
    key: str
    value: str
    writer: str

    @property
    def cleanup_policy(self) -> str:
        """The topic's ``cleanup.policy``."""
        return self.config["cleanup.policy"]


def declared_topics(settings: Settings) -> list[TopicSpec]:
    """The topics this product writes, with their settings applied."""
    n = settings.events_partitions
    rf = settings.replication_factor
    window_ms = str(settings.dedup_window_seconds * 1000)
    week = {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    compact = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
    dlq = {"cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS)}
    specs = [
        TopicSpec(
            settings.topic(names.EVENTS_TOPIC),
            n,
            rf,
            week,
            "`message.id`",
            "the callback item as received",
            "ingest",
        ),
        TopicSpec(
            settings.topic(names.DLQ_TOPIC),
            1,
            rf,
            dlq,
            "none",
            "`{raw, rawRef, error, requestId, receivedAt}`",
            "ingest",
        ),
        TopicSpec(
            settings.topic(names.DLQ_BLOBS_TOPIC),
            1,
            rf,
            dlq,
            "SHA-256 hex of the item",
            "a chunk of a dead-lettered item too large for one record",
            "ingest",
        ),
        TopicSpec(
            settings.topic(names.INBOUND_TOPIC),
            n,
            rf,
            week,
            "`message.id`",
            "`InboundMessage`",
            "process inbound",
        ),
        TopicSpec(
            settings.topic(names.DELIVERY_TOPIC),
            n,
            rf,
            compact,
            "`<messageId>/<recipient>`",
            "`DeliveryStatus`",
            "process delivery",
        ),
        TopicSpec(
            settings.topic(names.MMS_TOPIC),
            n,
            rf,
            compact,
            "`<messageId>/<recipient>`",
            "`MmsProgress`",
            "process mms",
        ),
    ]
    for processor in names.PROCESSORS:
        specs.append(
            TopicSpec(
                settings.dedup_topic(processor),
                n,
                rf,
                {"cleanup.policy": "compact,delete", "retention.ms": window_ms},
                "event digest, status key or mark",
                "dedup entry",
                f"process {processor}",
            )
        )
    if rf > 1:
        # acks=all waits only for the in-sync replicas; without a floor, a 200
        # could rest on the leader alone.
        floor = {"min.insync.replicas": str(rf - 1)}
        specs = [dataclasses.replace(s, config={**s.config, **floor}) for s in specs]
    return specs


async def ensure_topics(settings: Settings) -> dict[str, str]:
    """Create missing topics and check the partitions of existing ones.

    Returns each topic's outcome: ``created`` or ``exists``. Raises
    ``TopicError`` when an existing topic has fewer partitions than declared:
    the per-partition layout of outputs and state depends on it.
    """
    specs = declared_topics(settings)
    admin: Any = new_admin(settings)
    outcome: dict[str, str] = {}
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            new = NewTopic(
                spec.name, spec.partitions, spec.replication, topic_configs=spec.config
            )
            try:
                await admin.create_topics([new])
                outcome[spec.name] = "created"
            except TopicAlreadyExistsError:
                outcome[spec.name] = "exists"
        present = [s for s in specs if s.name not in outcome]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            for spec in present:
                found = counts.get(spec.name, 0)
                if found != spec.partitions:
                    msg = f"topic has {found} partitions, declared {spec.partitions}"
                    raise TopicError(msg, topic=spec.name)
                outcome[spec.name] = "exists"
    except KafkaError as exc:
        msg = f"topic administration failed: {type(exc).__name__}"
        raise TopicError(msg) from exc
    finally:
        await admin.close()
    for name, state in outcome.items():
        log.info("topic %s %s", name, state)
    return outcome
