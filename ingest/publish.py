"""
The ingress's Kafka side: one producer, started and stopped explicitly.

The producer may not reach the broker when the process starts (the broker is
away, or starts later). The ingress starts anyway: every publish and every
readiness probe retries the connection within its own deadline, so callbacks
get a 503 with ``Retry-After`` and Kubernetes sees the pod as not ready,
instead of the process failing to start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from ingest.records import Record
from message_events.errors import BrokerError, PublishTimeout
from message_events.kafka import new_producer, translated
from message_events.metrics import PUBLISH_SECONDS
from message_events.settings import Settings

log = logging.getLogger(__name__)

# Kubernetes probes time out after 1 s by default; this answers before a
# longer probe timeout would, and a dead broker fails well within it.
READY_TIMEOUT_S = 2.0


class Ingress:
    """Publishes callback records and waits for every acknowledgement.

    Without a ``producer`` the ingress builds one from the settings at
    ``start()`` and stops it at ``stop()``. A producer passed in belongs to
    the caller, who starts and stops it; ``stop()`` only flushes it.
    """

    def __init__(self, settings: Settings, *, producer: Any | None = None) -> None:
        self._settings = settings
        self._producer: Any | None = producer
        self._owns_producer = producer is None
        self._started = producer is not None
        self._start_lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the producer and try once to connect it.

        A broker that cannot be reached is logged, not raised: the connection
        is retried by each publish and each readiness probe.
        """
        if self._producer is None:
            self._producer = new_producer(self._settings, "ingest")
        try:
            async with asyncio.timeout(self._settings.publish_deadline_ms / 1000):
                await self._ensure_started()
        except (BrokerError, TimeoutError) as exc:
            log.warning(
                "Kafka is not reachable yet; callbacks get 503 until it is",
                extra={"fields": {"error": str(exc) or type(exc).__name__}},
            )
        except BaseException:
            # Cancelled while connecting: nobody will call stop() for us.
            await self.stop()
            raise

    async def stop(self) -> None:
        """Flush what is still buffered, then stop the producer if it is ours."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._started:
            await producer.flush()
        if self._owns_producer:
            await producer.stop()
        self._started = False

    async def ready(self) -> bool:
        """Whether the producer can reach the broker right now."""
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await self._ensure_started()
                # Asks a broker for the cluster's metadata over the network;
                # raises when no known broker answers.
                await self._producer.client.fetch_all_metadata()
        except (BrokerError, KafkaError, OSError, TimeoutError):
            return False
        return True

    async def publish(self, records: Sequence[Record], *, request_id: str) -> None:
        """Send every record and wait until all of them are acknowledged.

        Raises ``PublishTimeout`` when the acknowledgements do not all arrive
        within ``publish_deadline_ms`` and ``PublishError`` when Kafka refuses
        a record. Either way some records may have been written: Bandwidth
        retries the whole body and the processors drop the duplicates.
        """
        deadline_ms = self._settings.publish_deadline_ms
        try:
            # send() waits for topic metadata when the broker is away, so the
            # connection and the sends are inside the deadline, not only acks.
            async with asyncio.timeout(deadline_ms / 1000):
                await self._ensure_started()
                await self._send_all(records, request_id)
        except TimeoutError as exc:
            msg = f"not acknowledged within {deadline_ms} ms"
            raise PublishTimeout(
                msg, topic=records[0].topic, request_id=request_id
            ) from exc

    async def _ensure_started(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self._producer is None:
                msg = "the ingress is stopped"
                raise BrokerError(msg)
            with translated("connect the producer"):
                await self._producer.start()
            self._started = True
            log.info("Kafka producer connected")

    async def _send_all(self, records: Sequence[Record], request_id: str) -> None:
        producer: Any = self._producer
        started = time.perf_counter()
        futures: list[asyncio.Future[Any]] = []
        try:
            # Queue every record before waiting, so they share produce requests.
            for record in records:
                with translated("send", topic=record.topic, request_id=request_id):
                    future = await producer.send(
                        record.topic,
                        record.value,
                        key=record.key,
                        headers=record.headers,
                    )
                futures.append(future)
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            _settle(futures)

        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                with translated(
                    "acknowledge", topic=record.topic, request_id=request_id
                ):
                    raise outcome
        PUBLISH_SECONDS.observe(time.perf_counter() - started)


def _settle(futures: list[asyncio.Future[Any]]) -> None:
    """Leave no acknowledgement future pending or with an unread error.

    Cancelling does not withdraw a record already queued (aiokafka sends it
    anyway); it only stops anyone waiting for it, and keeps asyncio from
    reporting errors nobody retrieved.
    """
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()
