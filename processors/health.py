"""
A small HTTP server for a processor process: ``/healthz``, ``/readyz`` and
``/metrics`` on ``PROCESSOR_HTTP_PORT``, for Kubernetes probes and Prometheus.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processors.runner import Processor


def health_app(processors: Sequence[Processor]) -> web.Application:
    """An application reporting on the given processors."""

    async def healthz(_: web.Request) -> web.Response:
        # Alive until a loop has died; a processor still joining its group is
        # alive but not ready.
        alive = not any(p.failed for p in processors)
        return web.json_response(
            {"status": "ok" if alive else "dead"}, status=200 if alive else 503
        )

    async def readyz(_: web.Request) -> web.Response:
        # An instance without partitions (more replicas than partitions) is a
        # ready standby: it takes partitions over when another one leaves.
        ready = all(p.running for p in processors)
        body = {p.name: sorted(p.assigned) for p in processors}
        return web.json_response(
            {"ready": ready, "partitions": body}, status=200 if ready else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
