"""The whole pipeline while its broker vanishes or stalls under callback load.

Each test runs a dedicated embedded broker behind a ``FaultProxy`` (clients
only ever see the proxy), the ingress and the three processors in this
process, and a load that retries every body until it gets a 200.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from chaos.broker import ProxiedBroker
from chaos.load import Answer, CallbackLoad, EventFactory, Ledger, audit, body_of
from ingest import CALLBACK_PATH, IngressServer
from message_events.settings import PROCESSORS, Settings
from message_events.topics import ensure_topics
from processors import Processor
from tests.kafka_helpers import wait_until

pytestmark = pytest.mark.broker

DEADLINE_MS = 1500
# The ingress answers at its deadline; this allows for a busy machine.
ANSWER_SLACK_S = 1.0
AUTH = {"Authorization": aiohttp.encode_basic_auth("bw", "chaos")}
CREDENTIALS = {"callback_username": "bw", "callback_password": "chaos"}


class Pipeline:
    """The ingress and one instance of each processor, on a proxied broker."""

    def __init__(self, broker: ProxiedBroker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings
        self.server = IngressServer(settings, host="127.0.0.1", port=0)
        self.processors = [Processor(settings, name) for name in PROCESSORS]

    @property
    def url(self) -> str:
        """The ingress's base URL."""
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        """Start the ingress and the processors."""
        await self.server.start()
        await asyncio.gather(*(p.start() for p in self.processors))

    async def stop(self) -> None:
        """Stop everything started."""
        await self.server.stop()
        for processor in self.processors:
            await processor.stop()


@pytest.fixture
async def pipeline(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Pipeline]:
    """A started pipeline on its own broker behind a fault proxy."""
    async with ProxiedBroker() as broker:
        settings = make_settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            publish_deadline_ms=DEADLINE_MS,
            **CREDENTIALS,
        )
        await ensure_topics(settings)
        running = Pipeline(broker, settings)
        await running.start()
        try:
            yield running
        finally:
            broker.thaw()
            await broker.restore()
            await running.stop()


async def _get(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def _probe(session: aiohttp.ClientSession, url: str) -> Answer:
    """Post one new event; note how and when the ingress answered."""
    body = body_of(EventFactory().batch(1))
    started = time.monotonic()
    async with session.post(url + CALLBACK_PATH, data=body, headers=AUTH) as response:
        await response.read()
        return Answer(started, time.monotonic(), response.status, 1)


async def _outage(
    pipeline: Pipeline, fault: str
) -> tuple[Ledger, float, float, list[Answer], dict[str, Any]]:
    """Run the load through one outage of the broker; return what happened."""
    ledger = Ledger()
    load = CallbackLoad(pipeline.url, EventFactory(), ledger, headers=AUTH, seed=3)
    timings: dict[str, Any] = {}
    probes: list[Answer] = []
    await load.start()
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until(
                lambda: len(ledger.acknowledged) >= 60, what="load flowing"
            )
            away = time.monotonic()
            if fault == "cut":
                await pipeline.broker.cut()
            else:
                pipeline.broker.freeze()

            probes = [await _probe(session, pipeline.url) for _ in range(2)]
            ready_url = pipeline.url + "/readyz"
            await wait_until(
                lambda: _is(session, ready_url, 503), timeout_s=5, what="not ready"
            )
            # Away longer than the session timeout: the group loses its members.
            away_s = pipeline.settings.consumer_session_timeout_ms / 1000 + 1
            await wait_until(
                lambda: (
                    time.monotonic() - away >= away_s
                    and sum(a.started > away for a in ledger.answers) >= 12
                ),
                timeout_s=30,
                what="load answered while the broker is away",
            )

            back = time.monotonic()
            if fault == "cut":
                await pipeline.broker.restore()
            else:
                pipeline.broker.thaw()
            await wait_until(
                lambda: _is(session, ready_url, 200), timeout_s=30, what="ready again"
            )
            timings["ready_s"] = time.monotonic() - back
            await wait_until(
                lambda: any(
                    a.started > back and a.status == 200 for a in ledger.answers
                ),
                timeout_s=30,
                what="a 200 after the broker came back",
            )
            timings["first_200_s"] = time.monotonic() - back
            acked = len(ledger.acknowledged)
            await wait_until(
                lambda: len(ledger.acknowledged) >= acked + 60,
                timeout_s=30,
                what="throughput after the broker came back",
            )
        await load.drain(timeout_s=60)
    finally:
        await load.close()
    assert load.pending == 0
    return ledger, away, back, probes, timings


async def _is(session: aiohttp.ClientSession, url: str, status: int) -> bool:
    return await _get(session, url) == status


@pytest.mark.parametrize("fault", ["cut", "sigstop"])
async def test_broker_away_mid_load(pipeline: Pipeline, fault: str) -> None:
    """Broker cut off (proxy) or frozen (SIGSTOP) while callbacks flow.

    While it is away every callback gets 503 within the publish deadline and
    /readyz says 503; when it is back, 200s return without a restart, and
    every acknowledged event reaches its output topic exactly once.
    """
    ledger, away, back, probes, _ = await _outage(pipeline, fault)
    report = await audit(
        pipeline.settings, ledger.sent, ledger.acknowledged, timeout_s=60
    )

    limit_s = DEADLINE_MS / 1000 + ANSWER_SLACK_S
    during = [a for a in ledger.answers if a.started > away and a.ended < back]
    assert [p.status for p in probes] == [503, 503]
    assert all(p.ended - p.started <= limit_s for p in probes)
    assert during
    assert {a.status for a in during} == {503}
    slow = [a for a in ledger.answers if a.ended - a.started > limit_s]
    assert slow == []
    assert all(p.running for p in pipeline.processors)
    assert report.acknowledged > 120
    assert (report.lost_ids, report.duplicated_ids) == ([], [])
