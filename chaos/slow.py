"""
A processor whose handler is slow: ``python -m chaos.slow inbound|delivery|mms``.

It runs like ``message-events process`` (settings from the environment, JSON
logs on stdout, SIGTERM stops it gracefully), but every event its handler sees
first costs ``CHAOS_SLOW_HANDLE_MS`` (default 150) of blocking work, so its
batches can outlast ``CONSUMER_MAX_POLL_INTERVAL_MS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import Any

from message_events import logs
from message_events.settings import PROCESSORS, Settings, load_settings
from message_events.topics import ensure_topics
from processors import Processor

_CHECK_S = 0.5


def slow_down(processor: Processor, delay_s: float) -> None:
    """Make the processor's handler block for ``delay_s`` per event."""
    handle = processor.handler.handle

    def slow_handle(*args: Any) -> Any:
        time.sleep(delay_s)  # CPU-bound work blocks the event loop too
        return handle(*args)

    setattr(processor.handler, "handle", slow_handle)  # noqa: B010


async def _run(settings: Settings, name: str, delay_s: float) -> None:
    await ensure_topics(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    processor = Processor(settings, name)
    slow_down(processor, delay_s)
    await processor.start()
    try:
        while processor.running and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _CHECK_S)
    finally:
        await processor.stop()


def main(argv: list[str]) -> int:
    """Run one slow processor until SIGTERM."""
    if len(argv) != 1 or argv[0] not in PROCESSORS:
        print(f"usage: python -m chaos.slow {'|'.join(PROCESSORS)}", file=sys.stderr)
        return 2
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    delay_s = float(os.environ.get("CHAOS_SLOW_HANDLE_MS", "150")) / 1000
    asyncio.run(_run(settings, argv[0], delay_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
