"""
Running the ingress application on a TCP port, with a graceful stop.

Stopping closes the listening socket first, then lets requests in flight
finish (up to ``shutdown_drain_seconds``), and only then flushes and stops the
producer: a callback that was accepted is answered after its records are
acknowledged, never cut off with its records half sent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from ingest.app import create_app
from message_events.settings import Settings

log = logging.getLogger(__name__)


class IngressServer:
    """The ingress application bound to a host and port.

    ``port=0`` binds a free port; ``port`` tells which after ``start()``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        auth_required: bool = True,
        producer: Any | None = None,
    ) -> None:
        self._settings = settings
        self._host = settings.http_host if host is None else host
        self._port = settings.http_port if port is None else port
        self._app = create_app(settings, auth_required=auth_required, producer=producer)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._runner is None or not self._runner.addresses:
            msg = "the server is not started"
            raise RuntimeError(msg)
        port: int = self._runner.addresses[0][1]
        return port

    async def start(self) -> None:
        """Start the ingress (producer included), then listen."""
        runner = web.AppRunner(
            self._app,
            shutdown_timeout=self._settings.shutdown_drain_seconds,
            # After an answer given before the whole body arrived (401, 408,
            # 413), the rest is read and dropped for at most this long, so the
            # client can read the answer; then the connection is closed.
            lingering_time=self._settings.body_read_timeout_ms / 1000,
        )
        self._runner = runner
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        log.info(
            "ingress listening",
            extra={"fields": {"host": self._host, "port": self.port}},
        )

    async def stop(self) -> None:
        """Stop listening, drain requests in flight, then flush the producer."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await runner.cleanup()
        log.info("ingress stopped")


async def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    auth_required: bool = True,
    producer: Any | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the ingress until ``stop`` is set or the task is cancelled.

    Either way the server stops gracefully (see ``IngressServer.stop``).
    Signal handling belongs to the caller: set ``stop`` from a SIGTERM
    handler.
    """
    server = IngressServer(
        settings,
        host=host,
        port=port,
        auth_required=auth_required,
        producer=producer,
    )
    try:
        await server.start()
        await (stop or asyncio.Event()).wait()
    finally:
        # Shielded so a second cancellation cannot cut the drain short.
        await asyncio.shield(server.stop())
