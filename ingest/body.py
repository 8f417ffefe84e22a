"""
Reading a callback body and cutting it into items, each kept as received.

A body is UTF-8 JSON: an array of items, or one object taken as a one-item
array. orjson validates the whole body (strict RFC 8259); the standard
library's C scanner then finds where each item starts and ends, so every item
travels on as the exact bytes Bandwidth sent, not a re-serialisation.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import orjson
from aiohttp import StreamReader

from message_events.errors import MessageEventsError

BOM = b"\xef\xbb\xbf"

# RFC 8259 whitespace; str.isspace() would also accept characters JSON does not.
_JSON_WHITESPACE = " \t\n\r"

_decoder = json.JSONDecoder()


class InvalidBody(MessageEventsError):
    """The body is not UTF-8 JSON holding an array or an object.

    Messages name the problem and at most a position, never body content.
    """


class BodyTooLarge(MessageEventsError):
    """The body is longer than the configured limit."""


class Item(NamedTuple):
    """One callback item: its text as received, its bytes, its parsed value."""

    text: str
    raw: bytes
    value: object


async def read_capped(stream: StreamReader, limit: int) -> bytes:
    """Read a whole request body, refusing to hold more than ``limit`` bytes.

    Chunked bodies have no Content-Length to check up front, so the cap is
    enforced while reading.
    """
    body = bytearray()
    async for chunk in stream.iter_any():
        body += chunk
        if len(body) > limit:
            msg = f"body exceeds {limit} bytes"
            raise BodyTooLarge(msg, limit=limit)

    return bytes(body)


def parse_items(body: bytes) -> list[Item]:
    """Cut a callback body into its items.

    Raises ``InvalidBody`` when the body is not UTF-8, not JSON, or JSON that
    is neither an array nor an object.
    """
    body = body.removeprefix(BOM)
    text = _decode_utf8(body)
    parsed = _validate_json(body)

    if isinstance(parsed, dict):
        stripped = text.strip(_JSON_WHITESPACE)
        return [Item(stripped, stripped.encode(), parsed)]
    if not isinstance(parsed, list):
        msg = "body must be a JSON array or object"
        raise InvalidBody(msg)

    texts = _array_item_texts(text)
    return [
        Item(item_text, item_text.encode(), value)
        for item_text, value in zip(texts, parsed, strict=True)
    ]


def _decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"body is not valid UTF-8 (at byte {exc.start})"
        raise InvalidBody(msg) from None


def _validate_json(body: bytes) -> object:
    # orjson's message can quote the offending text; keep only our own words.
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        msg = f"body is not valid JSON (at character {exc.pos})"
        raise InvalidBody(msg) from None


def _array_item_texts(text: str) -> list[str]:
    """The text of each element of a JSON array already known to be valid."""
    texts: list[str] = []
    opening = _skip_whitespace(text, 0)
    index = _skip_whitespace(text, opening + 1)
    if text[index] == "]":
        return texts

    while True:
        start = index
        try:
            _, end = _decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            # orjson accepted it, so only the standard library's own limits
            # (integer digits, nesting depth) can land here.
            msg = f"JSON item at character {start} is too large or too deep"
            raise InvalidBody(msg) from None
        texts.append(text[start:end])

        index = _skip_whitespace(text, end)
        if text[index] == "]":
            return texts
        index = _skip_whitespace(text, index + 1)


def _skip_whitespace(text: str, index: int) -> int:
    while text[index] in _JSON_WHITESPACE:
        index += 1
    return index
