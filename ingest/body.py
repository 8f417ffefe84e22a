"""
Reading a callback body and cutting it into items, each kept as received.

A body is UTF-8 JSON (RFC 8259): an array of items, or one object taken as a
one-item array. Whatever the ``Content-Type`` and its charset claim, the
bytes are read as UTF-8; one leading byte order mark is dropped.

orjson validates the whole body first. It refuses a few things RFC 8259
allows (an escaped lone surrogate such as ``"\\ud800"``, a number beyond a
double such as ``1e400`` or a 500-digit integer); such a body is read again
by the standard library, with the same strictness otherwise (no ``NaN``, no
raw control characters in strings), so one odd item cannot get a whole batch
refused. The standard library's scanner then finds where each item starts
and ends, so every item travels on as the exact bytes Bandwidth sent, not a
re-serialisation. Duplicate keys are allowed, as RFC 8259 does; the last one
wins, in both parsers and in the event model.
"""

from __future__ import annotations

import json
from typing import NamedTuple, NoReturn

import orjson
from aiohttp import StreamReader

from message_events.errors import MessageEventsError

BOM = b"\xef\xbb\xbf"

# RFC 8259 whitespace; str.isspace() would also accept characters JSON does not.
_JSON_WHITESPACE = " \t\n\r"


def _refuse_constant(name: str) -> NoReturn:
    # NaN, Infinity and -Infinity are the standard library's extensions.
    msg = f"{name} is not JSON"
    raise ValueError(msg)


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)


class InvalidBody(MessageEventsError):
    """The body is not UTF-8 JSON holding an array or an object.

    Messages name the problem and at most a position, never body content.
    """


class BodyUnreadable(InvalidBody):
    """The body's bytes could not be received: broken framing or encoding, or
    the client went away. The connection cannot carry another request."""


class BodyTooLarge(MessageEventsError):
    """The body is longer than the configured limit."""


class BodyTooSlow(MessageEventsError):
    """The body did not arrive within the configured time."""


class Item(NamedTuple):
    """One callback item: its text as received, its bytes, its parsed value.

    ``value`` is the standard library's reading of ``text``: integers of any
    length stay exact, and an escaped lone surrogate stays in the string.
    """

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

    Raises ``InvalidBody`` when the body is not UTF-8, not JSON, JSON that is
    neither an array nor an object, or deeper or larger than the parsers go.
    """
    body = body.removeprefix(BOM)
    text = _decode_utf8(body)
    parsed = _validate_json(body, text)

    if isinstance(parsed, dict):
        start = _skip_whitespace(text, 0)
        item, _ = _item_at(text, start)
        return [item]
    if not isinstance(parsed, list):
        msg = "body must be a JSON array or object"
        raise InvalidBody(msg)

    return _array_items(text)


def parse_item(text: str) -> Item:
    """One item from its JSON text, read as ``parse_items`` reads each item.

    Raises ``InvalidBody`` when the text is not one JSON value.
    """
    try:
        value, end = _decoder.raw_decode(text)
    except (ValueError, RecursionError):
        msg = "item is not valid JSON"
        raise InvalidBody(msg) from None
    if end != len(text):
        msg = "item is more than one JSON value"
        raise InvalidBody(msg)

    return Item(text, text.encode(), value)


def _decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"body is not valid UTF-8 (at byte {exc.start})"
        raise InvalidBody(msg) from None


def _validate_json(body: bytes, text: str) -> object:
    # orjson's message can quote the offending text; keep only our own words.
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        refused = f"body is not valid JSON (at character {exc.pos})"
    try:
        return _decoder.decode(text)
    except RecursionError:
        msg = "body is nested too deeply"
        raise InvalidBody(msg) from None
    except ValueError:
        # Refused by both, or a number past the standard library's limit
        # of 4300 digits: report orjson's position.
        raise InvalidBody(refused) from None


def _array_items(text: str) -> list[Item]:
    """Each element of a JSON array already known to be valid, as an item."""
    items: list[Item] = []
    opening = _skip_whitespace(text, 0)
    index = _skip_whitespace(text, opening + 1)
    if text[index] == "]":
        return items

    while True:
        item, end = _item_at(text, index)
        items.append(item)

        index = _skip_whitespace(text, end)
        if text[index] == "]":
            return items
        index = _skip_whitespace(text, index + 1)


def _item_at(text: str, start: int) -> tuple[Item, int]:
    """The item whose JSON text starts at ``start``, and where it ends."""
    try:
        value, end = _decoder.raw_decode(text, start)
    except (ValueError, RecursionError):
        # Valid JSON, so only the standard library's own limits (integer
        # digits, nesting depth) can land here.
        msg = f"JSON item at character {start} is too large or too deep"
        raise InvalidBody(msg) from None
    item_text = text[start:end]

    return Item(item_text, item_text.encode(), value), end


def _skip_whitespace(text: str, index: int) -> int:
    while text[index] in _JSON_WHITESPACE:
        index += 1
    return index
