"""
Items too large for one Kafka record, kept losslessly in chunks.

An item whose record would pass ``PRODUCER_MAX_REQUEST_BYTES`` cannot go to
the events topic nor, inside a dead letter, to the dead-letter topic: Kafka
would refuse it and Bandwidth would retry the whole body for 24 hours. Its
bytes are cut into chunks of half that size on the blobs topic instead, each
keyed by the item's SHA-256, and its dead letter carries a ``rawRef`` naming
the topic, digest, size and number of chunks. ``reassemble`` puts the chunks
back together and checks them against the reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from message_events.errors import MessageEventsError
from schemas.outputs import RawRef

CHUNK_INDEX_HEADER = "chunk-index"
CHUNK_COUNT_HEADER = "chunk-count"


class BlobError(MessageEventsError):
    """Chunks are missing, duplicated, or do not match their reference."""


def chunk_bytes(max_request_bytes: int) -> int:
    """The payload of one chunk: half a record, leaving room for the rest."""
    return max_request_bytes // 2


def split(raw: bytes, size: int, *, topic: str) -> tuple[RawRef, list[bytes]]:
    """The reference to ``raw`` and its chunks of at most ``size`` bytes."""
    chunks = [raw[start : start + size] for start in range(0, len(raw), size)]
    ref = RawRef(
        topic=topic,
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        chunks=len(chunks),
    )

    return ref, chunks


def reassemble(ref: RawRef, chunks: Iterable[tuple[int, int, bytes]]) -> bytes:
    """The item's bytes from its ``(index, count, payload)`` chunks, any order.

    A chunk seen twice (a retried body, a retried send) must be identical.
    Raises ``BlobError`` when a chunk is missing, the counts disagree, or the
    result does not have the reference's size and digest.
    """
    parts: dict[int, bytes] = {}
    for index, count, payload in chunks:
        if count != ref.chunks or not 0 <= index < count:
            msg = f"chunk {index} of {count} does not belong to {ref.chunks} chunks"
            raise BlobError(msg, sha256=ref.sha256)
        if parts.setdefault(index, payload) != payload:
            msg = f"chunk {index} differs between copies"
            raise BlobError(msg, sha256=ref.sha256)
    if len(parts) != ref.chunks:
        msg = f"{ref.chunks - len(parts)} of {ref.chunks} chunks are missing"
        raise BlobError(msg, sha256=ref.sha256)
    raw = b"".join(parts[index] for index in range(ref.chunks))
    if len(raw) != ref.size or hashlib.sha256(raw).hexdigest() != ref.sha256:
        msg = "reassembled bytes do not match the reference"
        raise BlobError(msg, sha256=ref.sha256)

    return raw
