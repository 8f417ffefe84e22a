"""Running and stopping the ingress server (a fake producer, no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from ingest import CALLBACK_PATH, IngressServer, serve
from message_events.broker import free_port
from message_events.settings import Settings, load_settings

WAIT_S = 10.0


class HeldProducer:
    """Acknowledges nothing until ``release()``; notes what happened when."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.sent = asyncio.Event()
        self._acks: list[asyncio.Future[None]] = []

    async def send(self, topic: str, value: bytes, **options: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.append(future)
        self.log.append("send")
        self.sent.set()
        return future

    def release(self) -> None:
        for future in self._acks:
            future.set_result(None)
        self.log.append("acked")

    async def flush(self) -> None:
        self.log.append("flush")


def _settings() -> Settings:
    return load_settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        callback_username="bw",
        callback_password="pw",
        shutdown_drain_seconds=WAIT_S,
        publish_deadline_ms=9000,
    )


_EVENT = {
    "type": "message-sent",
    "time": "2026-03-02T18:00:00Z",
    "to": "+15555550150",
    "message": {"id": "m-1"},
}


async def _post(port: int) -> tuple[int, Any]:
    auth = {"Authorization": aiohttp.encode_basic_auth("bw", "pw")}
    url = f"http://127.0.0.1:{port}{CALLBACK_PATH}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=orjson.dumps([_EVENT]), headers=auth) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds, for at most ``WAIT_S``."""
    async with asyncio.timeout(WAIT_S):
        # A listening socket has no event to wait on: poll it.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _listening(port: int) -> bool:
    return not await _refused(port)


async def _refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:  # refused, or reset while the socket closes
        return True
    writer.close()
    await writer.wait_closed()
    return False


class TestIngressServer:
    async def test_stop_drains_requests_in_flight(self) -> None:
        """Stopping refuses new connections, answers the request in flight,
        and only then flushes the producer."""
        producer = HeldProducer()
        server = IngressServer(_settings(), host="127.0.0.1", port=0, producer=producer)
        await server.start()
        port = server.port
        in_flight = asyncio.create_task(_post(port))
        async with asyncio.timeout(WAIT_S):
            await producer.sent.wait()

        stopping = asyncio.create_task(server.stop())
        await _until(lambda: _refused(port))
        assert not in_flight.done()
        assert producer.log == ["send"]
        producer.release()

        async with asyncio.timeout(WAIT_S):
            status, body = await in_flight
            await stopping
        assert (status, body["accepted"]) == (200, 1)
        assert producer.log == ["send", "acked", "flush"]

    def test_port_before_start(self) -> None:
        """Asking for the port of a server not started is an error."""
        server = IngressServer(_settings(), port=0, producer=HeldProducer())

        with pytest.raises(RuntimeError, match="not started"):
            _ = server.port


class TestServe:
    async def test_returns_after_stop_is_set(self) -> None:
        """serve() runs until its stop event is set, then flushes and returns."""
        producer = HeldProducer()
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve(_settings(), host="127.0.0.1", port=0, producer=producer, stop=stop)
        )

        stop.set()

        async with asyncio.timeout(WAIT_S):
            await task
        assert producer.log == ["flush"]

    async def test_cancelled_serve_stops_the_server(self) -> None:
        """Cancelling serve() still stops the server and flushes the producer."""
        producer = HeldProducer()
        port = free_port()
        task = asyncio.create_task(
            serve(_settings(), host="127.0.0.1", port=port, producer=producer)
        )
        await _until(lambda: _listening(port))

        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(WAIT_S):
                await task
        assert producer.log == ["flush"]


def test_public_api_is_exported() -> None:
    """``ingest`` exports exactly its documented names, sorted."""
    import ingest

    assert ingest.__all__ == [
        "CALLBACK_PATH",
        "Ingress",
        "IngressServer",
        "create_app",
        "serve",
    ]
    assert all(hasattr(ingest, name) for name in ingest.__all__)
