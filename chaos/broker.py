"""
A dedicated embedded broker that every client reaches through a ``FaultProxy``.

The broker advertises the proxy's port, so producers and consumers reconnect
through the proxy after reading metadata. The broker itself can be frozen
(SIGSTOP) and thawed (SIGCONT) to simulate a stall; being memory only, it is
never killed while a scenario runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
from types import TracebackType

from chaos.proxy import FaultProxy
from message_events.broker import EmbeddedBroker, free_port


class ProxiedBroker:
    """An ``EmbeddedBroker`` behind a ``FaultProxy``; use ``async with``."""

    def __init__(self) -> None:
        port = free_port()
        self.broker = EmbeddedBroker(advertised_port=port)
        self.proxy = FaultProxy(self.broker.port, port=port)
        self.frozen = False

    @property
    def bootstrap_servers(self) -> str:
        """The proxy's address, which is what clients must use."""
        return self.proxy.address

    async def start(self) -> None:
        """Start the broker, then the proxy in front of it."""
        await asyncio.to_thread(self.broker.start)
        await self.proxy.start()

    async def cut(self) -> None:
        """The broker vanishes: connections closed, new ones refused."""
        await self.proxy.cut()

    async def restore(self) -> None:
        """The broker is reachable again."""
        await self.proxy.restore()

    def freeze(self) -> None:
        """Stop the broker process (SIGSTOP): connections open, no answers."""
        pid = self._pid()
        os.kill(pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """Let the broker process run again (SIGCONT)."""
        if self.frozen:
            os.kill(self._pid(), signal.SIGCONT)
            self.frozen = False

    async def stop(self) -> None:
        """Stop the proxy and kill the broker (its memory is not needed)."""
        self.thaw()
        await self.proxy.stop()
        pid = self.broker.pid
        if pid is not None:
            # Tansu waits for its clients on SIGTERM; nothing is kept anyway.
            os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(self.broker.stop)

    def _pid(self) -> int:
        pid = self.broker.pid
        if pid is None:
            msg = "the broker is not running"
            raise RuntimeError(msg)
        return pid

    async def __aenter__(self) -> ProxiedBroker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
