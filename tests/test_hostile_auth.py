"""Hostile credentials: nothing is read, parsed or published before they pass.

The body parser, the body reader and the router are replaced by spies; with
any credentials that do not pass, none of them is called and the recording
producer stays empty, while the answer is always the same Basic challenge.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import encode_basic_auth, web
from aiohttp.test_utils import TestClient, TestServer

import ingest.app
from ingest import CALLBACK_PATH, create_app
from message_events.settings import load_settings
from tests.test_ingest_http import FakeProducer

USER = "bandwidth"
PASSWORD = "pässwörd:✓ 東京"
BODY = orjson.dumps(
    [
        {
            "type": "message-received",
            "time": "2026-03-02T18:00:00Z",
            "to": "+15555550100",
            "message": {"id": "m-1", "from": "+15555550150", "text": "hi"},
        }
    ]
)

Client = TestClient[web.Request, web.Application]


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


class Spies:
    """Counts the calls of the functions that touch the body."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("read_capped", "parse_items", "route_items"):
            monkeypatch.setattr(ingest.app, name, self._spy(name))

    def _spy(self, name: str) -> Callable[..., Any]:
        real = getattr(ingest.app, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return real(*args, **kwargs)

        return spy


@pytest.fixture
def producer() -> FakeProducer:
    """A producer that records every send."""
    return FakeProducer()


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Spies:
    """Spies on reading, parsing and routing the body."""
    return Spies(monkeypatch)


@pytest.fixture
async def client(producer: FakeProducer, spies: Spies) -> AsyncIterator[Client]:
    """An ingress accepting one pair with a non-ASCII password."""
    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        callback_username=USER,
        callback_password=PASSWORD,
        max_body_bytes=4096,
    )
    client: Client = TestClient(TestServer(create_app(settings, producer=producer)))
    await client.start_server()
    yield client
    await client.close()


REFUSED = [
    pytest.param(None, id="missing"),
    pytest.param(encode_basic_auth(USER, "wrong"), id="wrong-password"),
    pytest.param(encode_basic_auth("someone", PASSWORD), id="wrong-user"),
    pytest.param(encode_basic_auth(USER, PASSWORD[:-1]), id="password-prefix"),
    pytest.param(encode_basic_auth(USER, PASSWORD + " "), id="trailing-space"),
    pytest.param(encode_basic_auth("", ""), id="empty-pair"),
    pytest.param("Basic", id="scheme-only"),
    pytest.param("Basic ", id="scheme-and-space"),
    pytest.param("Basic %%%not-base64%%%", id="not-base64"),
    pytest.param("Basic YmFuZHdpZHRo", id="no-colon"),
    pytest.param(_basic(USER.encode() + b":x")[:-2], id="truncated-base64"),
    pytest.param(_basic(f"{USER}:{PASSWORD}".encode())[:-1] + "!", id="bad-padding"),
    pytest.param(
        _basic(f"{USER}:".encode() + PASSWORD.encode("utf-16")), id="utf-16-password"
    ),
    pytest.param(
        _basic(f"{USER}:".encode() + "pässwörd".encode("latin-1")),
        id="latin-1-password",
    ),
    pytest.param(f"Basic {USER}:{PASSWORD}", id="not-encoded-at-all"),
    pytest.param("Bearer " + base64.b64encode(b"x:y").decode(), id="bearer"),
    pytest.param("Digest username=bandwidth", id="digest"),
    pytest.param("Basic " + "A" * 4000, id="4k-of-base64"),
    pytest.param(_basic(b"\x00:\x00"), id="nul-pair"),
]


class TestRefusedCredentials:
    @pytest.mark.parametrize("authorization", REFUSED)
    async def test_challenge_and_nothing_touched(
        self,
        client: Client,
        producer: FakeProducer,
        spies: Spies,
        authorization: str | None,
    ) -> None:
        """401 with the challenge; the body is not read, parsed or routed."""
        headers = {} if authorization is None else {"Authorization": authorization}

        response = await client.post(CALLBACK_PATH, data=BODY, headers=headers)

        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == (
            'Basic realm="message-events", charset="UTF-8"'
        )
        assert orjson.loads(await response.read())["error"] == (
            "authentication required"
        )
        assert spies.calls == []
        assert producer.sent == []

    async def test_garbage_body_without_credentials_is_not_parsed(
        self, client: Client, producer: FakeProducer, spies: Spies
    ) -> None:
        """Even an invalid or oversized body only gets the challenge."""
        for body in (b"\xff\xfe not json", b"[" * 10_000, b" " * 100_000):
            response = await client.post(CALLBACK_PATH, data=body)

            assert response.status == 401
        assert spies.calls == []
        assert producer.sent == []


class TestAcceptedCredentials:
    @pytest.mark.parametrize(
        "authorization",
        [
            pytest.param(encode_basic_auth(USER, PASSWORD), id="utf-8"),
            pytest.param(
                "basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
                id="lowercase-scheme",
            ),
        ],
    )
    async def test_non_ascii_password_in_utf8(
        self,
        client: Client,
        producer: FakeProducer,
        spies: Spies,
        authorization: str,
    ) -> None:
        """The password is UTF-8, colons and all, as the challenge says."""
        response = await client.post(
            CALLBACK_PATH, data=BODY, headers={"Authorization": authorization}
        )

        assert response.status == 200
        assert spies.calls == ["read_capped", "parse_items", "route_items"]
        assert [s.value for s in producer.sent] == [BODY[1:-1]]
