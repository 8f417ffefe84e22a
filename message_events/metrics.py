"""
Prometheus metrics of every component, on the process's default registry.

``run`` hosts all components in one process, so they share one ``/metrics``.
Labels never hold personal data: types, statuses, processors and partitions.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "message_events_http_requests",
    "Callback requests answered, by status code",
    ["status"],
)
EVENTS_ACCEPTED = Counter(
    "message_events_ingest_events",
    "Callback items published to the events topic, by type",
    ["type"],
)
DEAD_LETTERS = Counter(
    "message_events_dead_letters",
    "Callback items sent to the dead-letter topic, by reason",
    ["reason"],
)
PUBLISH_SECONDS = Histogram(
    "message_events_publish_seconds",
    "Time from the first send of a body to the last acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 8),
)
PROCESSED = Counter(
    "message_events_processed_events",
    "Input events a processor handled, by outcome",
    ["processor", "outcome"],
)
ANOMALIES = Counter(
    "message_events_anomalies",
    "Events that break the documented contract, by kind",
    ["processor", "kind"],
)
DEDUP_ENTRIES = Gauge(
    "message_events_dedup_entries",
    "Entries held in memory by a processor's dedup state",
    ["processor"],
)
RESTORE_SECONDS = Histogram(
    "message_events_restore_seconds",
    "Time to restore the dedup state of newly assigned partitions",
    ["processor"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CONSUMER_LAG = Gauge(
    "message_events_consumer_lag",
    "Records between a processor's position and the partition's end",
    ["processor", "partition"],
)
BATCH_SECONDS = Histogram(
    "message_events_batch_seconds",
    "Time to handle one polled batch, publish and commit",
    ["processor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
