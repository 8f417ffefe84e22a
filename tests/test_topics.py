"""Topic declarations: partitions and configuration that the guarantees rely on."""

from __future__ import annotations

from message_events.settings import load_settings
from message_events.topics import declared_topics


def test_replicated_topics_need_two_in_sync_copies() -> None:
    """With three replicas, acks=all means at least two copies of every record."""
    specs = declared_topics(load_settings(replication_factor=3))

    assert {s.config.get("min.insync.replicas") for s in specs} == {"2"}


def test_single_replica_topics_set_no_floor() -> None:
    """On one broker (dev, tests) the floor is the broker's default of one."""
    specs = declared_topics(load_settings(replication_factor=1))

    assert all("min.insync.replicas" not in s.config for s in specs)


def test_outputs_and_state_are_partitioned_like_the_input() -> None:
    """A processor writes to the partition number of its input record."""
    settings = load_settings(events_partitions=7)

    counts = {s.name: s.partitions for s in declared_topics(settings)}

    for name, partitions in counts.items():
        if not name.startswith("bandwidth.messaging.events.dlq"):
            assert partitions == 7, name
