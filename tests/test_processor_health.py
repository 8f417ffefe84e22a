"""The processor's probe endpoints follow its loop's life."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from processors.health import health_app


class _FakeProcessor:
    """Stands in for a Processor: only the attributes the probes read."""

    def __init__(self, *, running: bool, failed: bool) -> None:
        self.name = "delivery"
        self.running = running
        self.failed = failed
        self.assigned = {0, 1} if running else set()


async def _statuses(processor: Any) -> tuple[int, int]:
    async with TestClient(TestServer(health_app([processor]))) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        return health.status, ready.status


async def test_joining_processor_is_alive_but_not_ready() -> None:
    """While it joins its group, liveness holds and readiness waits."""
    assert await _statuses(_FakeProcessor(running=False, failed=False)) == (200, 503)


async def test_running_processor_is_ready() -> None:
    """A running loop is alive and ready."""
    assert await _statuses(_FakeProcessor(running=True, failed=False)) == (200, 200)


async def test_dead_loop_fails_liveness() -> None:
    """A loop that died makes /healthz fail, so Kubernetes restarts the pod."""
    assert await _statuses(_FakeProcessor(running=False, failed=True)) == (503, 503)
