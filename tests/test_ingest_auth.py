"""Unit tests of callback authentication: no server, no broker."""

from __future__ import annotations

import base64

import pytest
from aiohttp import encode_basic_auth

from ingest.auth import AuthOutcome, challenge, check_basic_auth

CREDENTIALS = {
    "inbound": "s3cret",
    "outbound": "pa:ss:wörd ✓",
}


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


class TestCheckBasicAuth:
    @pytest.mark.parametrize("user", sorted(CREDENTIALS))
    def test_every_pair_is_accepted(self, user: str) -> None:
        """Each configured pair authenticates."""
        header = encode_basic_auth(user, CREDENTIALS[user])

        assert check_basic_auth(header, CREDENTIALS) is AuthOutcome.ACCEPTED

    def test_password_with_colons_and_non_ascii(self) -> None:
        """The password is everything after the first colon, read as UTF-8."""
        header = _basic("outbound:pa:ss:wörd ✓".encode())

        assert check_basic_auth(header, CREDENTIALS) is AuthOutcome.ACCEPTED

    def test_missing_header(self) -> None:
        """No header at all is Bandwidth's first, unauthenticated attempt."""
        assert check_basic_auth(None, CREDENTIALS) is AuthOutcome.MISSING

    @pytest.mark.parametrize(
        ("user", "password"),
        [
            ("inbound", "wrong"),
            ("nobody", "s3cret"),
            ("inbound", "pa:ss:wörd ✓"),  # a password of another user
            ("inbound", "s3cret "),
            ("", ""),
        ],
    )
    def test_wrong_credentials(self, user: str, password: str) -> None:
        """A pair that is not configured exactly is refused."""
        header = encode_basic_auth(user, password)

        assert check_basic_auth(header, CREDENTIALS) is AuthOutcome.INVALID

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param("", id="empty"),
            pytest.param("Basic", id="no-credentials"),
            pytest.param("Basic !!!not-base64!!!", id="bad-base64"),
            pytest.param("Basic aW5ib3VuZDpzM2NyZXQ", id="unpadded-base64"),
            pytest.param(_basic(b"inbound"), id="no-colon"),
            pytest.param(_basic(b"inbound:\xff\xfe"), id="not-utf8"),
            pytest.param("Bearer czNjcmV0", id="other-scheme"),
            pytest.param("Basic aW5ib3VuZDpzM2NyZXQ=é", id="non-ascii"),
        ],
    )
    def test_malformed_header(self, header: str) -> None:
        """A header that cannot be decoded is refused, not an error."""
        assert check_basic_auth(header, CREDENTIALS) is AuthOutcome.INVALID

    def test_no_configured_pairs_accept_nothing(self) -> None:
        """With no pairs, even well-formed credentials are refused."""
        header = encode_basic_auth("inbound", "s3cret")

        assert check_basic_auth(header, {}) is AuthOutcome.INVALID


class TestChallenge:
    def test_names_realm_and_charset(self) -> None:
        """The challenge is what RFC 7617 and Bandwidth expect."""
        assert challenge("message-events") == (
            'Basic realm="message-events", charset="UTF-8"'
        )

    def test_quotes_in_realm_are_escaped(self) -> None:
        """A quote in the realm cannot end the quoted string early."""
        assert challenge('a"b\\c') == 'Basic realm="a\\"b\\\\c", charset="UTF-8"'
