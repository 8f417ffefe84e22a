"""Unit tests of the callback body parser: no server, no broker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ingest.body import BOM, InvalidBody, Item, parse_item, parse_items

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def _separators_only(body: bytes, items: list[Item]) -> bytes:
    """What is left of an array body once every item's bytes are cut out."""
    rest, position = bytearray(), 0
    for item in items:
        start = body.index(item.raw, position)
        rest += body[position:start]
        position = start + len(item.raw)
    return bytes(rest + body[position:])


class TestArrays:
    @pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
    def test_fixture_items_are_exact_slices(self, path: Path) -> None:
        """Each item is a byte slice of the body, in order, covering it all."""
        body = path.read_bytes()

        items = parse_items(body)

        assert [orjson.loads(item.raw) for item in items] == orjson.loads(body)
        assert [item.value for item in items] == orjson.loads(body)
        assert [item.text.encode() for item in items] == [i.raw for i in items]
        assert set(_separators_only(body, items).decode()) <= set("[], \n\t\r")

    def test_delimiters_inside_strings_do_not_split_items(self) -> None:
        """Brackets, commas, braces and escaped quotes in strings stay inside."""
        first = b'{"a": "],[\\"{", "b": [1, {"c": "}"}]}'
        second = b'{"d":"\\u00e9 \xc3\xa9 \\ud83d\\ude80"}'
        body = b"[ " + first + b" ,\n\t" + second + b"\r\n]"

        items = parse_items(body)

        assert [item.raw for item in items] == [first, second]

    def test_any_json_value_is_an_item(self) -> None:
        """Scalars and arrays inside the array are items too (later dead letters)."""
        items = parse_items(b'[1, "x", null, [true], {}]')

        assert [item.raw for item in items] == [b"1", b'"x"', b"null", b"[true]", b"{}"]
        assert [item.value for item in items] == [1, "x", None, [True], {}]

    @pytest.mark.parametrize("body", [b"[]", b" [ \n\t ] \r\n"])
    def test_empty_array_has_no_items(self, body: bytes) -> None:
        """An empty array is a valid body without items."""
        assert parse_items(body) == []

    def test_non_ascii_bytes_are_kept(self) -> None:
        """UTF-8 text comes back byte for byte, escapes left unexpanded."""
        item = '{"text": "Zoë 東京 👨‍👩‍👧‍👦 \\u00e9"}'.encode()

        (parsed,) = parse_items(b"[" + item + b"]")

        assert parsed.raw == item


class TestSingleObject:
    def test_object_is_one_item_without_surrounding_whitespace(self) -> None:
        """A bare object is the only item; its value is the stripped body."""
        obj = b'{"type": "message-sent", "message": {"id": "m1"}}'

        items = parse_items(b" \r\n\t" + obj + b"\n\n")

        assert items == [Item(obj.decode(), obj, orjson.loads(obj))]

    def test_one_leading_bom_is_stripped(self) -> None:
        """A UTF-8 BOM before the JSON is not part of the item."""
        items = parse_items(BOM + b'{"a": 1}')

        assert [item.raw for item in items] == [b'{"a": 1}']

    def test_second_bom_is_invalid(self) -> None:
        """Only one BOM is stripped; a second one is not JSON."""
        with pytest.raises(InvalidBody, match="not valid JSON"):
            parse_items(BOM + BOM + b"[]")


class TestWhatOrjsonRefuses:
    """RFC 8259 allows a few things orjson refuses; they are items all the same."""

    def test_lone_surrogate_escape_is_an_item(self) -> None:
        """An escaped lone surrogate stays in the value, and escaped in the bytes."""
        item = b'{"text": "\\ud800 and \\udfff"}'

        (parsed,) = parse_items(b"[" + item + b"]")

        assert parsed.raw == item
        assert parsed.value == {"text": "\ud800 and \udfff"}

    def test_numbers_beyond_a_double_are_items(self) -> None:
        """1e400 and a 500-digit integer do not get the body refused."""
        big = b"9" * 500
        body = b'[{"n": 1e400}, {"n": ' + big + b"}, 1]"

        items = parse_items(body)

        assert [i.raw for i in items] == [b'{"n": 1e400}', b'{"n": ' + big + b"}", b"1"]
        assert [i.value for i in items] == [{"n": float("inf")}, {"n": int(big)}, 1]

    def test_integers_past_64_bits_stay_exact(self) -> None:
        """orjson would read them as floats; the item value keeps every digit."""
        (item,) = parse_items(b"[18446744073709551617]")

        assert item.value == 18446744073709551617

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"[" * 100_000, id="100k-open-brackets"),
            pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100k-deep-array"),
            pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, id="100k-deep"),
            pytest.param(b"[" * 2000 + b"]" * 2000, id="2000-deep-array"),
        ],
    )
    def test_deep_nesting_is_refused_without_recursion_error(self, body: bytes) -> None:
        """Nesting past the parsers' limits is an invalid body, not a crash."""
        with pytest.raises(InvalidBody, match=r"not valid JSON|too deep"):
            parse_items(body)


class TestParseItem:
    def test_reads_one_item_as_parse_items_does(self) -> None:
        """The replay's reading of a dead letter's text equals the ingress's."""
        text = '{"a": "\\ud800", "n": 1e400}'

        item = parse_item(text)

        assert item == Item(text, text.encode(), {"a": "\ud800", "n": float("inf")})

    @pytest.mark.parametrize("text", ["", "{", "[1] 2", "NaN"])
    def test_refuses_what_is_not_one_value(self, text: str) -> None:
        """Text that is not exactly one JSON value is an InvalidBody."""
        with pytest.raises(InvalidBody):
            parse_item(text)


class TestInvalidBodies:
    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"", id="empty"),
            pytest.param(b"not json", id="text"),
            pytest.param(b"[1,]", id="trailing-comma"),
            pytest.param(b"{'a': 1}", id="single-quotes"),
            pytest.param(b"[NaN]", id="nan"),
            pytest.param(b"[1] [2]", id="two-values"),
            pytest.param(b"[Infinity]", id="infinity"),
            pytest.param(b"[-Infinity]", id="minus-infinity"),
            pytest.param(b'["a\x00b"]', id="raw-nul-in-string"),
            pytest.param(b'["a\x1fb"]', id="raw-control-in-string"),
            pytest.param(b'["a\nb"]', id="raw-newline-in-string"),
            pytest.param(b'["\\x41"]', id="bad-escape"),
            pytest.param(b'["\\ud80"]', id="short-unicode-escape"),
            pytest.param(b"[01]", id="leading-zero"),
            pytest.param(b"[1.]", id="bare-point"),
            pytest.param(b"[\xc2\xa01]", id="nbsp-whitespace"),
            pytest.param(b"[" + b"9" * 5000 + b"]", id="5000-digit-integer"),
        ],
    )
    def test_not_json(self, body: bytes) -> None:
        """Anything that is not RFC 8259 JSON, or past the parsers' limits."""
        with pytest.raises(InvalidBody, match="not valid JSON"):
            parse_items(body)

    @pytest.mark.parametrize("body", [b"1", b'"x"', b"null", b"true", b" 2.5 "])
    def test_scalar_json(self, body: bytes) -> None:
        """JSON that is neither an array nor an object is refused."""
        with pytest.raises(InvalidBody, match="must be a JSON array or object"):
            parse_items(body)

    @pytest.mark.parametrize(
        "body", [b'["\xff"]', b'[{"a": "\xc3"}]', b'{"a": "\xed\xa0\x80"}']
    )
    def test_invalid_utf8(self, body: bytes) -> None:
        """Bytes that are not UTF-8 (surrogates encoded included) are refused."""
        with pytest.raises(InvalidBody, match="not valid UTF-8"):
            parse_items(body)

    def test_error_does_not_quote_the_body(self) -> None:
        """The error names a position, never the content around it."""
        with pytest.raises(InvalidBody) as caught:
            parse_items(b'[{"to": "+15555550151", "text": "hello"')

        assert "1555" not in str(caught.value)
        assert "hello" not in str(caught.value)
