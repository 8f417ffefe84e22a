"""
HTTP Basic authentication of callbacks, as Bandwidth performs it.

Bandwidth follows RFC 7235 to the letter: its first POST carries no
credentials and it only sends them after a 401 with a ``WWW-Authenticate:
Basic`` challenge. A 401 without that header, or a 403, loses the callback.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping

from aiohttp import BasicAuth


class AuthOutcome(enum.Enum):
    """What the ``Authorization`` header of a request amounts to."""

    MISSING = "missing"
    INVALID = "invalid"
    ACCEPTED = "accepted"


def check_basic_auth(header: str | None, credentials: Mapping[str, str]) -> AuthOutcome:
    """Check an ``Authorization`` header against every accepted pair.

    Every pair is compared, in constant time per pair, so the answer takes
    as long for the first user as for the last or for none.
    """
    if header is None:
        return AuthOutcome.MISSING
    # aiohttp deprecates constructing BasicAuth for 4.0, not decoding with it;
    # decode() checks the scheme, strict base64 and splits at the first colon.
    try:
        offered = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:  # malformed header, bad base64 or not UTF-8
        return AuthOutcome.INVALID

    login = offered.login.encode()
    password = offered.password.encode()
    matched = False
    for user, secret in credentials.items():
        same_user = hmac.compare_digest(login, user.encode())
        same_password = hmac.compare_digest(password, secret.encode())
        matched |= same_user & same_password

    return AuthOutcome.ACCEPTED if matched else AuthOutcome.INVALID


def challenge(realm: str) -> str:
    """The ``WWW-Authenticate`` value that makes Bandwidth send credentials."""
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}", charset="UTF-8"'
