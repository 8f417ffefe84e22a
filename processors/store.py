"""
The dedup topic's record format and the restore of a partition's state.

Records on ``message-events.<processor>.dedup``, partition = input partition:

==============  =============================  ===========================
key             value                          meaning
==============  =============================  ===========================
``e`` + digest  expiry, epoch seconds          an event was handled
``s`` + key     ``<status> <expiry>``          latest status of a key
``m``           output offset                  outputs below it have their
                                               entries written
==============  =============================  ===========================

A crash can land a batch's outputs without its dedup entries. Restore
therefore also reads the output partition from the ``m`` mark to its end and
takes every output found there as handled, writing the missing entries back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiokafka import TopicPartition

from processors.state import PartitionState

log = logging.getLogger(__name__)

EVENT = b"e"
STATUS = b"s"
MARK = b"m"
_EMPTY_ROUND_MS = 200
# Once every position is past the reported end, reading goes on this long at
# most: a partition that another member still writes to (this one was frozen
# past its session timeout mid-restore) has no end to wait for.
_TAIL_S = 2.0


def event_entry(digest: bytes, expiry: int) -> tuple[bytes, bytes]:
    """The record that says an event was handled."""
    return EVENT + digest, b"%d" % expiry


def status_entry(key: str, status: str, expiry: int) -> tuple[bytes, bytes]:
    """The record that holds the latest status of a key."""
    return STATUS + key.encode(), f"{status} {expiry}".encode()


def mark_entry(offset: int) -> tuple[bytes, bytes]:
    """The record that moves a partition's output mark."""
    return MARK, b"%d" % offset


def apply_entry(
    state: PartitionState,
    key: bytes,
    value: bytes,
    now: int,
    expiries: dict[bytes, int] | None = None,
) -> None:
    """Fold one dedup record into the state, skipping expired entries.

    ``expiries`` maps expiry texts already seen to their ints, so entries
    written together share one int object instead of holding one each (32
    bytes an entry, a quarter of the state).
    """
    kind = key[:1]
    if kind == EVENT:
        shared = None if expiries is None else expiries.get(value)
        expiry = int(value) if shared is None else shared
        if expiries is not None and shared is None:
            expiries[value] = expiry
        if expiry > now:
            state.events[key[1:]] = expiry
        else:
            state.events.pop(key[1:], None)
    elif kind == STATUS:
        status, _, expiry_text = value.decode().partition(" ")
        expiry = int(expiry_text)
        if expiry > now:
            state.statuses[key[1:].decode()] = (status, expiry)
        else:
            state.statuses.pop(key[1:].decode(), None)
    elif kind == MARK:
        state.output_mark = max(state.output_mark, int(value))


async def read_to_end(
    reader: Any, starts: dict[TopicPartition, int]
) -> AsyncIterator[list[Any]]:
    """Yield record lists of the given partitions until each is read to its end.

    The end is reached when every position is at or past the reported end
    offset and two more fetch rounds in a row return nothing: the embedded
    broker can report an end offset below the true end, and one slow fetch
    on a busy machine must not end the read early. Records that keep coming
    past the reported end for ``_TAIL_S`` are another writer's, not the end.
    """
    if not starts:
        return
    reader.assign(list(starts))
    for tp, offset in starts.items():
        reader.seek(tp, offset)
    ends = await reader.end_offsets(list(starts))
    empty_rounds = 0
    past_end_since: float | None = None
    while True:
        batch = await reader.getmany(timeout_ms=_EMPTY_ROUND_MS)
        for records in batch.values():
            yield records
        empty_rounds = 0 if batch else empty_rounds + 1
        positions = {tp: await reader.position(tp) for tp in starts}
        if not all(positions[tp] >= ends[tp] for tp in starts):
            continue
        if past_end_since is None:
            past_end_since = time.monotonic()
        if empty_rounds >= 2 or time.monotonic() - past_end_since > _TAIL_S:
            return


async def restore_partitions(
    reader: Any,
    dedup_topic: str,
    output_topic: str,
    partitions: list[int],
    window_s: int,
) -> tuple[dict[int, PartitionState], dict[int, list[tuple[bytes, bytes]]]]:
    """Rebuild the state of some input partitions.

    Returns the states and, per partition, the entries missing from the dedup
    topic (found only as outputs past the mark), which the caller writes back,
    then moves the partition's mark to ``output_mark``, before it handles any
    record of that partition.
    """
    now = int(time.time())
    states = {p: PartitionState() for p in partitions}
    starts = {TopicPartition(dedup_topic, p): 0 for p in partitions}
    expiries: dict[bytes, int] = {}
    async for records in read_to_end(reader, starts):
        state = states[records[0].partition]
        for record in records:
            if record.key is None or record.value is None:
                continue
            try:
                apply_entry(state, record.key, record.value, now, expiries)
            except (ValueError, UnicodeDecodeError):
                # Not written by this code: skip it rather than stall the
                # partition on every restore.
                log.warning(
                    "unreadable dedup entry skipped",
                    extra={
                        "fields": {
                            "topic": record.topic,
                            "partition": record.partition,
                            "offset": record.offset,
                        }
                    },
                )

    repairs: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in partitions}
    tail = {TopicPartition(output_topic, p): states[p].output_mark for p in partitions}
    expiry = now + window_s
    async for records in read_to_end(reader, tail):
        partition = records[0].partition
        state = states[partition]
        for record in records:
            found = _entries_of_output(record, expiry)
            for key, value in found:
                apply_entry(state, key, value, now)
            repairs[partition].extend(found)
            state.output_mark = record.offset + 1
    for partition, entries in repairs.items():
        if entries:
            log.warning(
                "recovered outputs without dedup entries",
                extra={
                    "fields": {
                        "topic": output_topic,
                        "partition": partition,
                        "entries": len(entries),
                    }
                },
            )
    return states, repairs


def _entries_of_output(record: Any, expiry: int) -> list[tuple[bytes, bytes]]:
    """The dedup entries an output record implies."""
    try:
        value = orjson.loads(record.value)
        digest = bytes.fromhex(value["eventId"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        log.warning(
            "unreadable record on output topic",
            extra={
                "fields": {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                }
            },
        )
        return []
    entries = [event_entry(digest, expiry)]
    status = value.get("status")
    if isinstance(status, str) and record.key is not None:
        entries.append(status_entry(record.key.decode(), status, expiry))
    return entries
