"""
The naive baseline: the callback endpoint written the obvious way.

It parses the body, then publishes each item with ``send_and_wait`` (one
acknowledgement round trip after another) on a producer with the product's
settings, and answers 200. No validation, routing or dead letters: the
ingress's extra work only makes the comparison kinder to this one.

    python -m bench.naive --port 8081
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bench.common import settings
from message_events.kafka import new_producer
from message_events.settings import EVENTS_TOPIC

_PRODUCER = web.AppKey("producer", object)


async def handle(request: web.Request) -> web.Response:
    """Publish every item, one acknowledged send at a time."""
    items = await request.json()
    if isinstance(items, dict):
        items = [items]
    producer: Any = request.app[_PRODUCER]
    topic = settings().topic(EVENTS_TOPIC)
    for item in items:
        await producer.send_and_wait(
            topic, json.dumps(item).encode(), key=item["message"]["id"].encode()
        )
    return web.json_response({"accepted": len(items)})


async def _producer(app: web.Application) -> AsyncIterator[None]:
    producer: Any = new_producer(settings(), "bench.naive")
    await producer.start()
    app[_PRODUCER] = producer
    yield
    await producer.stop()


def create_app() -> web.Application:
    """The naive application."""
    app = web.Application()
    app.router.add_post("/callbacks/messaging", handle)
    app.cleanup_ctx.append(_producer)
    return app


def main() -> None:
    """Entry point of ``python -m bench.naive``."""
    parser = argparse.ArgumentParser(prog="python -m bench.naive")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(
        create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
