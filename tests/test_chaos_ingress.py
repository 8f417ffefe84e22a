"""The ingress when clients vanish mid-request and when it is told to stop."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from chaos.broker import ProxiedBroker
from chaos.load import (
    CUTS,
    CallbackLoad,
    EventFactory,
    Ledger,
    Tally,
    body_of,
    event_id_header,
    post_half,
)
from chaos.processes import Child, settings_env
from ingest import CALLBACK_PATH, IngressServer
from message_events.broker import free_port
from message_events.settings import EVENTS_TOPIC, Settings
from message_events.topics import ensure_topics
from tests.kafka_helpers import wait_until

pytestmark = pytest.mark.broker

AUTH = {"Authorization": aiohttp.encode_basic_auth("bw", "chaos")}
CREDENTIALS = {"callback_username": "bw", "callback_password": "chaos"}


async def _events_topic(settings: Settings, seconds: float) -> collections.Counter[str]:
    """The event ids on the events topic, counted, read for ``seconds``."""
    assert settings.kafka_bootstrap_servers is not None
    tally = Tally(
        settings.kafka_bootstrap_servers,
        settings.topic(EVENTS_TOPIC),
        settings.events_partitions,
        event_id_header,
    )
    await tally.start()
    try:
        await tally.read(seconds)
    finally:
        await tally.stop()
    return tally.counts


@pytest.fixture
async def ingress(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, IngressServer]]:
    """An ingress on a free port, with this test's topics."""
    settings = make_settings(**CREDENTIALS)
    await ensure_topics(settings)
    server = IngressServer(settings, host="127.0.0.1", port=0)
    await server.start()
    try:
        yield settings, server
    finally:
        await server.stop()


@pytest.mark.parametrize("cut", CUTS)
async def test_client_gone_mid_body_publishes_nothing_of_it(
    ingress: tuple[Settings, IngressServer],
    caplog: pytest.LogCaptureFixture,
    cut: str,
) -> None:
    """Headers and half a body, then the client closes: nothing is published.

    The complete body posted again afterwards is published, each event once.
    """
    settings, server = ingress
    events = EventFactory().batch(3)
    body = body_of(events)
    rid = f"half-{cut}"
    caplog.set_level(logging.INFO, logger="ingest.app")

    headers = {**AUTH, "Content-Type": "application/json", "X-Request-Id": rid}
    await post_half(server.port, body, headers, cut)
    await wait_until(
        lambda: any(
            getattr(r, "fields", {}).get("requestId") == rid for r in caplog.records
        ),
        timeout_s=10,
        what="the cut request handled",
    )
    after_cut = await _events_topic(settings, 1.5)

    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}{CALLBACK_PATH}"
        async with session.post(url, data=body, headers=AUTH) as response:
            status = response.status
    after_retry = await _events_topic(settings, 1.5)

    assert after_cut == collections.Counter()
    assert status == 200
    assert after_retry == collections.Counter({e.event_id: 1 for e in events})


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


# The only failure a client may see: its connection was refused, so its
# request never reached the stopping ingress.
NEVER_SENT = {"", "ClientConnectorError"}


async def test_sigterm_lets_requests_in_flight_finish(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """SIGTERM to ``message-events ingest`` while requests wait for their acks.

    The broker is stalled (the proxy holds everything) so requests are surely
    in flight; SIGTERM closes the listener, then the broker comes back. Every
    request in flight gets its 200, none is cut off, the process exits 0, and
    every acknowledged event is on the events topic.
    """
    async with ProxiedBroker() as broker:
        settings = make_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            publish_deadline_ms=6000,
            shutdown_drain_seconds=8,
            http_host="127.0.0.1",
            **CREDENTIALS,
        )
        await ensure_topics(settings)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        child = Child(
            ["ingest", "--port", str(port)], settings_env(settings), tmp_path / "i.log"
        )
        ledger = Ledger()
        load = CallbackLoad(
            base, EventFactory(), ledger, headers=AUTH, concurrency=6, seed=5
        )
        child.start()
        try:
            async with aiohttp.ClientSession() as session:
                await wait_until(
                    lambda: _ok(session, base + "/readyz"), timeout_s=30, what="ready"
                )
            await load.start()
            await wait_until(lambda: len(ledger.acknowledged) >= 50, what="load")
            broker.proxy.stall()
            await wait_until(lambda: load.in_flight >= 6, what="requests held")
            stopped_at = time.monotonic()
            child.terminate()
            await wait_until(lambda: _refused(port), timeout_s=10, what="listener gone")
            broker.proxy.resume()
            exit_code = await child.wait(30)
        finally:
            await load.close()
            await child.stop()
        landed = await _events_topic(settings, 2.0)

    in_flight = [a for a in ledger.answers if a.started < stopped_at < a.ended]
    assert exit_code == 0
    assert len([a for a in in_flight if a.status == 200]) >= 3
    assert {a.status for a in in_flight if a.error == ""} == {200}
    assert {a.error for a in ledger.answers} <= NEVER_SENT
    assert ledger.acknowledged - landed.keys() == set()


async def _ok(session: aiohttp.ClientSession, url: str) -> bool:
    return await _status(session, url) == 200
