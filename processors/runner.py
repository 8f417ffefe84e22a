"""
The consumer loop shared by the three processors.

Per polled batch: restore any partition not yet in memory, decide on every
record, publish the outputs and wait for their acks, then publish the dedup
entries and the output mark and wait for theirs, then commit the offsets. A
crash at any point loses nothing (offsets are committed last) and redelivery
publishes no duplicate (the dedup entries, or the outputs found past the
mark, say the events were handled).

One batch is in flight at a time. A rebalance waits for it to finish before
partitions are handed over, so the next owner restores complete state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from typing import Any

import pydantic
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from message_events import metrics
from message_events.errors import BrokerError
from message_events.kafka import new_consumer, new_producer, translated
from message_events.settings import EVENTS_TOPIC, Settings
from processors import store
from processors.handlers import HANDLERS, Decision, Handler
from processors.state import PartitionState
from schemas.events import CallbackEvent
from schemas.identity import event_identity

log = logging.getLogger(__name__)

_POLL_MS = 500
_PURGE_EVERY_S = 60.0
_RETRY_BACKOFF_S = 1.0

_Headers = list[tuple[str, bytes]]
_NO_HEADERS: _Headers = []


class _Batch:
    """What one polled batch produces before it is published."""

    def __init__(self) -> None:
        self.outputs: list[tuple[int, bytes, bytes, _Headers]] = []
        self.entries: dict[int, list[tuple[bytes, bytes]]] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.outcomes: dict[str, int] = {}

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Processor:
    """One instance of a processor: a member of its consumer group.

    ``start()`` joins the group and runs the loop in a background task;
    ``stop()`` finishes the batch in flight, commits, and leaves the group.
    ``wait()`` returns when the loop ends and re-raises what killed it.
    """

    def __init__(self, settings: Settings, name: str) -> None:
        handler: Handler = HANDLERS[name]()
        self.settings = settings
        self.name = name
        self.handler = handler
        self.input_topic = settings.topic(EVENTS_TOPIC)
        self.output_topic = settings.topic(handler.output_topic)
        self.dedup_topic = settings.dedup_topic(name)
        self.group_id = settings.group_id(name)
        self._states: dict[int, PartitionState] = {}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: Any = None
        self._consumer: Any = None
        self._reader: Any = None
        self._last_purge = time.monotonic()
        # Deciding may use half the max poll interval; publishing and
        # committing the batch get the other half.
        self._decide_budget_s = settings.consumer_max_poll_interval_ms / 2000

    @property
    def running(self) -> bool:
        """Whether the loop is alive."""
        return self._task is not None and not self._task.done()

    @property
    def failed(self) -> bool:
        """Whether the loop has ended without being asked to stop."""
        return (
            self._task is not None and self._task.done() and not self._stopping.is_set()
        )

    @property
    def assigned(self) -> set[int]:
        """Input partitions this instance owns now."""
        if self._consumer is None:
            return set()
        return {tp.partition for tp in self._consumer.assignment()}

    def state(self, partition: int) -> PartitionState | None:
        """The in-memory state of a partition, if restored."""
        return self._states.get(partition)

    async def start(self) -> None:
        """Connect, join the group and start the loop."""
        self._producer = new_producer(self.settings, f"process.{self.name}")
        self._reader = new_consumer(self.settings, None, f"process.{self.name}.restore")
        self._consumer = new_consumer(
            self.settings, self.group_id, f"process.{self.name}"
        )
        with translated("starting processor clients", topic=self.input_topic):
            await self._producer.start()
            await self._reader.start()
            self._consumer.subscribe([self.input_topic], listener=_Listener(self))
            await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name=f"processor-{self.name}")
        self._task.add_done_callback(self._on_done)
        log.info(
            "processor started",
            extra={"fields": {"processor": self.name, "group": self.group_id}},
        )

    async def stop(self) -> None:
        """Finish the batch in flight, commit it, and leave the group."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task
        for client in (self._consumer, self._reader, self._producer):
            if client is not None:
                with contextlib.suppress(KafkaError):
                    await client.stop()
        self._consumer = self._reader = self._producer = None
        log.info("processor stopped", extra={"fields": {"processor": self.name}})

    async def wait(self) -> None:
        """Wait for the loop to end; re-raise the error that ended it.

        Cancelling the caller does not cancel the loop (a signal handler that
        stops waiting must not cut a batch off between its outputs and its
        commit); only ``stop()`` ends it, after the batch in flight.
        """
        if self._task is not None:
            await asyncio.shield(self._task)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical(
                "processor loop died",
                exc_info=exc,
                extra={"fields": {"processor": self.name}},
            )

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with translated("polling", topic=self.input_topic):
                polled = await self._consumer.getmany(timeout_ms=_POLL_MS)
            if polled:
                async with self._lock:
                    await self._handle_polled(polled)
            if time.monotonic() - self._last_purge > _PURGE_EVERY_S:
                async with self._lock:
                    self._purge()

    async def _handle_polled(self, polled: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        assignment = self._consumer.assignment()
        owned = {tp: records for tp, records in polled.items() if tp in assignment}
        try:
            # Every assigned partition at once, not only those in this batch:
            # a restore's cost is mostly its final empty fetch rounds, paid
            # once for all partitions instead of once per partition.
            await self._ensure_restored(sorted(tp.partition for tp in assignment))
            batch = self._decide(owned, started + self._decide_budget_s)
            await self._check_membership(owned)
            await self._publish(batch)
            await self._commit(batch.positions)
            for tp, records in owned.items():
                # Records left undecided are fetched again by the next poll.
                position = batch.positions.get(tp, records[0].offset)
                if position <= records[-1].offset:
                    self._consumer.seek(tp, position)
        except CommitFailedError:
            # The group rebalanced under us; the new owner redoes the batch and
            # the entries we wrote make that a no-op.
            log.warning(
                "commit refused after a rebalance",
                extra={"fields": {"processor": self.name}},
            )
            self._forget(list(owned))
            return
        except BrokerError as exc:
            log.warning(
                "batch failed, will retry",
                extra={"fields": {"processor": self.name, "error": str(exc)}},
            )
            self._forget(list(owned))
            for tp, records in owned.items():
                self._consumer.seek(tp, records[0].offset)
            await self._pause(_RETRY_BACKOFF_S)
            return
        self._account(batch, time.perf_counter() - started)

    async def _check_membership(self, owned: dict[TopicPartition, list[Any]]) -> None:
        """Raise unless this member still owns the partitions it polled.

        A member frozen past its session timeout (a long pause, a stalled VM,
        SIGSTOP) resumes with records fetched for partitions that now belong
        to another member, and with state that misses what that member did
        since: publishing them would duplicate outputs. Committing the offsets
        the batch starts at changes nothing, but the group coordinator refuses
        it unless this member is still in the current generation.
        """
        await self._commit({tp: records[0].offset for tp, records in owned.items()})

    async def _commit(self, positions: dict[TopicPartition, int]) -> None:
        # CommitFailedError passes untranslated: it means "the group moved on",
        # not "the broker is in trouble", and is handled apart.
        try:
            await self._consumer.commit(positions)
        except CommitFailedError:
            raise
        except KafkaError as exc:
            msg = f"committing: {type(exc).__name__}"
            raise BrokerError(msg, topic=self.input_topic) from exc

    def _decide(
        self, polled: dict[TopicPartition, list[Any]], give_up_at: float
    ) -> _Batch:
        """Decide on the polled records until done or ``give_up_at``.

        A member that does not poll within the max poll interval is thrown out
        of its group, and the same slow batch would throw it out again after
        it rejoined. So once the batch has used its share of the interval, the
        records not yet decided are left for the next poll.
        """
        batch = _Batch()
        now = int(time.time())
        expiry = now + self.settings.dedup_window_seconds
        for tp, records in polled.items():
            state = self._states[tp.partition]
            entries = batch.entries.setdefault(tp.partition, [])
            for record in records:
                if batch.positions and time.perf_counter() > give_up_at:
                    return batch
                self._decide_one(record, state, now, expiry, batch, entries)
                batch.positions[tp] = record.offset + 1
        return batch

    def _decide_one(
        self,
        record: Any,
        state: PartitionState,
        now: int,
        expiry: int,
        batch: _Batch,
        entries: list[tuple[bytes, bytes]],
    ) -> None:
        try:
            event = CallbackEvent.model_validate_json(record.value or b"")
        except pydantic.ValidationError as exc:
            self._anomaly("invalid-input", record, batch, errors=exc.error_count())
            return
        identity = event_identity(event)
        digest = identity.digest()
        if state.seen(digest, now):
            batch.count("duplicate")
            return
        try:
            decision = self.handler.handle(
                event, identity, state, now, _header(record, "received-at")
            )
        except Exception as exc:
            # A record this code cannot handle must not stop its partition
            # forever (the loop would die on it at every restart): it is
            # counted and logged with its coordinates and stays in the input
            # topic. Only the error's type and frames are logged, since its
            # message may quote the event.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            self._anomaly(
                "unexpected-error",
                record,
                batch,
                error=type(exc).__name__,
                frames=frames,
            )
            return
        if decision is None:
            batch.count("ignored")
            return
        state.events[digest] = expiry
        entries.append(store.event_entry(digest, expiry))
        if decision.status_key is not None and decision.status is not None:
            state.statuses[decision.status_key] = (decision.status, expiry)
            entries.append(
                store.status_entry(decision.status_key, decision.status, expiry)
            )
        if decision.key is not None and decision.value is not None:
            headers = [("event-id", identity.event_id.encode())]
            batch.outputs.append(
                (record.partition, decision.key, decision.value, headers)
            )
        if decision.anomaly is not None:
            self._anomaly(decision.anomaly, record, batch, event_type=event.type)
        batch.count(decision.outcome)

    def _anomaly(self, kind: str, record: Any, batch: _Batch, **fields: object) -> None:
        metrics.ANOMALIES.labels(self.name, kind).inc()
        log.warning(
            "anomaly",
            extra={
                "fields": {
                    "processor": self.name,
                    "kind": kind,
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    **fields,
                }
            },
        )
        if kind in ("invalid-input", "unexpected-error"):
            batch.count("anomaly")

    async def _publish(self, batch: _Batch) -> None:
        outputs: dict[int, list[tuple[bytes, bytes, _Headers]]] = {}
        for partition, key, value, headers in batch.outputs:
            outputs.setdefault(partition, []).append((key, value, headers))
        with translated("publishing outputs", topic=self.output_topic):
            marks = await self._send_batches(self.output_topic, outputs)
        await self._write_entries(batch.entries)
        await self._write_marks(marks)

    async def _write_marks(self, marks: dict[int, int]) -> None:
        # Only once the entries are acknowledged: a mark that landed while an
        # earlier batch of entries failed would make a restore skip outputs
        # whose entries were lost, and publish them again.
        if not marks:
            return
        await self._write_entries(
            {p: [store.mark_entry(mark)] for p, mark in marks.items()}
        )
        for partition, mark in marks.items():
            self._states[partition].output_mark = mark

    async def _write_entries(
        self, entries: dict[int, list[tuple[bytes, bytes]]]
    ) -> None:
        records = {
            partition: [(key, value, _NO_HEADERS) for key, value in pairs]
            for partition, pairs in entries.items()
        }
        with translated("publishing dedup entries", topic=self.dedup_topic):
            await self._send_batches(self.dedup_topic, records)

    async def _send_batches(
        self, topic: str, records: dict[int, list[tuple[bytes, bytes, _Headers]]]
    ) -> dict[int, int]:
        """Publish records to their partitions and wait for every ack.

        Each partition's records go out in order in whole produce batches
        (the partitions side by side), which costs far less per record than
        ``send()``. Returns each partition's offset past its last record.
        """
        sends = [
            self._send_partition(topic, partition, items)
            for partition, items in records.items()
            if items
        ]
        return dict(await asyncio.gather(*sends))

    async def _send_partition(
        self, topic: str, partition: int, items: list[tuple[bytes, bytes, _Headers]]
    ) -> tuple[int, int]:
        producer = self._producer
        sent: list[tuple[Any, int]] = []
        builder = producer.create_batch()
        count = 0
        for key, value, headers in items:
            appended = builder.append(
                key=key, value=value, timestamp=None, headers=headers
            )
            if appended is not None:
                count += 1
                continue
            # Full: send it (this waits until the previous batch of the
            # partition is on its way) and start the next with this record,
            # which an empty batch always takes.
            builder.close()
            sent.append(
                (await producer.send_batch(builder, topic, partition=partition), count)
            )
            builder = producer.create_batch()
            builder.append(key=key, value=value, timestamp=None, headers=headers)
            count = 1
        # Closed, the batch goes out at once: there is nothing to linger for.
        builder.close()
        sent.append(
            (await producer.send_batch(builder, topic, partition=partition), count)
        )
        # gather() also collects the errors of batches after a failed one.
        metas = await asyncio.gather(*(future for future, _ in sent))
        end = max(meta.offset + n for meta, (_, n) in zip(metas, sent, strict=True))
        return partition, end

    async def _ensure_restored(self, partitions: list[int]) -> None:
        missing = [p for p in partitions if p not in self._states]
        if not missing:
            return
        started = time.perf_counter()
        with translated("restoring dedup state", topic=self.dedup_topic):
            states, repairs = await store.restore_partitions(
                self._reader,
                self.dedup_topic,
                self.output_topic,
                missing,
                self.settings.dedup_window_seconds,
            )
            # In place before the repairs are written, since writing their
            # marks moves these states' marks; a failed write makes the batch
            # forget them again.
            self._states.update(states)
            missing_entries = {p: e for p, e in repairs.items() if e}
            if missing_entries:
                await self._write_entries(missing_entries)
                await self._write_marks(
                    {p: states[p].output_mark for p in missing_entries}
                )
        elapsed = time.perf_counter() - started
        metrics.RESTORE_SECONDS.labels(self.name).observe(elapsed)
        log.info(
            "restored dedup state",
            extra={
                "fields": {
                    "processor": self.name,
                    "partitions": sorted(missing),
                    "entries": sum(len(s) for s in states.values()),
                    "durationMs": round(elapsed * 1000, 1),
                }
            },
        )
        self._update_size()

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._states.pop(tp.partition, None)
        self._update_size()

    def _purge(self) -> None:
        now = int(time.time())
        dropped = sum(state.purge(now) for state in self._states.values())
        self._last_purge = time.monotonic()
        if dropped:
            log.info(
                "expired dedup entries dropped",
                extra={"fields": {"processor": self.name, "entries": dropped}},
            )
        self._update_size()

    def _update_size(self) -> None:
        size = sum(len(state) for state in self._states.values())
        metrics.DEDUP_ENTRIES.labels(self.name).set(size)

    def _account(self, batch: _Batch, elapsed: float) -> None:
        metrics.BATCH_SECONDS.labels(self.name).observe(elapsed)
        for outcome, n in batch.outcomes.items():
            metrics.PROCESSED.labels(self.name, outcome).inc(n)
        for tp, position in batch.positions.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag = max(highwater - position, 0)
                metrics.CONSUMER_LAG.labels(self.name, str(tp.partition)).set(lag)
        log.info(
            "batch handled",
            extra={
                "fields": {
                    "processor": self.name,
                    "records": sum(batch.outcomes.values()),
                    "outputs": len(batch.outputs),
                    "outcomes": batch.outcomes,
                    "partitions": sorted(tp.partition for tp in batch.positions),
                    "durationMs": round(elapsed * 1000, 2),
                }
            },
        )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            self._forget(revoked)
        if not revoked:
            return
        log.info(
            "partitions revoked",
            extra={
                "fields": {
                    "processor": self.name,
                    "partitions": sorted(tp.partition for tp in revoked),
                }
            },
        )

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        # No restore here: aiokafka sends no heartbeats while this callback
        # runs, so a long restore would get the member evicted, again and
        # again. The batch loop restores a partition before it handles any of
        # its records, with heartbeats going.
        log.info(
            "partitions assigned",
            extra={
                "fields": {
                    "processor": self.name,
                    "partitions": sorted(tp.partition for tp in assigned),
                }
            },
        )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands rebalance callbacks to the processor."""

    def __init__(self, processor: Processor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._processor._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._processor._on_assigned(list(assigned))


def _header(record: Any, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name and value is not None:
            return bytes(value).decode("utf-8", "replace")
    return None


__all__ = ["Decision", "Processor"]
