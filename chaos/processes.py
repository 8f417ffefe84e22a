"""
``message-events`` commands as child processes, with their JSON logs kept.

Each child writes its log lines (``LOG_FORMAT=json``) to its own file, so a
test can read what one process did, in order, even after it was killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from message_events.settings import Settings


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child read the same ``settings``.

    Variables of the parent's shell that name a setting are left out, so
    only ``settings`` and ``extra`` decide.
    """
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            env[name.upper()] = value.get_secret_value()
        elif isinstance(value, dict):
            plain = {
                k: v.get_secret_value() if isinstance(v, SecretStr) else v
                for k, v in value.items()
            }
            env[name.upper()] = orjson.dumps(plain).decode()
        else:
            env[name.upper()] = str(value)
    env["LOG_FORMAT"] = "json"
    env.update(extra)
    return env


class Child:
    """One ``message-events`` process; its stdout goes to ``log_path``."""

    def __init__(
        self,
        args: Iterable[str],
        env: dict[str, str],
        log_path: Path,
        *,
        module: str = "message_events.cli",
    ) -> None:
        self.args = [sys.executable, "-m", module, *args]
        self.env = env
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id; the child must have been started."""
        assert self._process is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        """Start the process."""
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        self.signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: the command's graceful stop."""
        self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> None:
        """Send a signal if the process still runs."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    async def wait(self, timeout_s: float = 30.0) -> int:
        """Wait for the process to end; kill it at the deadline."""
        assert self._process is not None
        try:
            return await asyncio.to_thread(self._process.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            await asyncio.to_thread(self._process.wait)
            raise

    async def stop(self) -> None:
        """Make sure the process is gone (SIGKILL if need be)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.kill()
        await asyncio.to_thread(self._process.wait)

    async def wait_idle(self, quiet_s: float = 1.5, timeout_s: float = 30.0) -> None:
        """Wait until the process has handled no batch for ``quiet_s``."""
        count, since = self.count("batch handled"), time.monotonic()
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            now_count = self.count("batch handled")
            if now_count != count:
                count, since = now_count, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            await asyncio.sleep(0.05)
        msg = f"{self.log_path} still handling batches after {timeout_s} s"
        raise AssertionError(msg)

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines are skipped)."""
        lines = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                parsed = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                lines.append(parsed)
        return lines

    def count(self, message: str) -> int:
        """How many log lines so far have this message."""
        return sum(1 for line in self.logs() if line.get("message") == message)

    async def wait_for_log(
        self, message: str, *, count: int = 1, timeout_s: float = 60.0
    ) -> None:
        """Wait until ``count`` log lines with this message appeared, or fail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.count(message) >= count:
                return
            if self.returncode is not None:
                msg = f"{self.args} exited with {self.returncode} before {message!r}"
                raise AssertionError(msg)
            await asyncio.sleep(0.05)
        msg = f"not {count} x {message!r} in {self.log_path} within {timeout_s} s"
        raise AssertionError(msg)


def restored_before_handled(lines: list[dict[str, Any]]) -> tuple[bool, int]:
    """Whether each batch's partitions were restored before it was handled.

    Reads one process's log lines in order. Also returns how many entries
    were restored before its first batch.
    """
    restored: set[int] = set()
    entries = 0
    handled_any = False
    for line in lines:
        if line.get("message") == "restored dedup state":
            restored.update(line["partitions"])
            if not handled_any:
                entries += line["entries"]
        elif line.get("message") == "batch handled":
            handled_any = True
            if not set(line["partitions"]) <= restored:
                return False, entries
    return True, entries
