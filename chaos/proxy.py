"""
A TCP proxy on loopback that a test can cut, restore and stall.

Kafka clients learn the broker's address from metadata, so the proxy only sees
every connection when the broker advertises the proxy's port (see
``ProxiedBroker``). Cutting closes every connection and refuses new ones, as a
broker that vanished would; stalling keeps connections open but forwards
nothing, as a broker that hangs would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from message_events.broker import free_port

log = logging.getLogger(__name__)

_CHUNK_BYTES = 65536


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target_port`` until told not to."""

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def address(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def listening(self) -> bool:
        """Whether new connections are accepted."""
        return self._server is not None

    async def start(self) -> None:
        """Listen (again) on the proxy's port."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def cut(self) -> None:
        """Close every connection and refuse new ones until ``restore()``."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        log.info("proxy cut", extra={"fields": {"port": self.port}})

    async def restore(self) -> None:
        """Accept connections again, and forward again if stalled."""
        self._flowing.set()
        await self.start()
        log.info("proxy restored", extra={"fields": {"port": self.port}})

    def stall(self) -> None:
        """Keep connections open but forward nothing until ``resume()``."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again what was held back."""
        self._flowing.set()

    async def stop(self) -> None:
        """Cut, and wait for the forwarding tasks to end."""
        self._flowing.set()
        await self.cut()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, upstream_writer)
        self._writers.update(pair)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await source.read(_CHUNK_BYTES):
                await self._flowing.wait()
                if sink.transport.is_closing():
                    break
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side gone means the connection is gone: drop both ends.
            for end in pair:
                self._writers.discard(end)
                with contextlib.suppress(RuntimeError):
                    end.transport.abort()
