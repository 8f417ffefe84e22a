"""
The aiohttp application: the callback endpoint, probes and metrics.

A callback is answered 200 only once every item is acknowledged by Kafka
(events and dead letters alike), because Bandwidth forgets an event as soon
as it gets a 2xx and keeps no copy of inbound text. Anything else it will
retry for 24 hours, so a 503 while Kafka is away loses nothing.

The description of every route is served at ``/openapi.json`` (see
``ingest.openapi``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.auth import AuthOutcome, challenge, check_basic_auth
from ingest.body import (
    BodyTooLarge,
    BodyTooSlow,
    BodyUnreadable,
    InvalidBody,
    parse_items,
    read_capped,
)
from ingest.contract import Accepted, Answer, Health, Readiness, Refused
from ingest.publish import Ingress
from ingest.records import Routed, route_items, utc_now
from message_events.errors import BrokerError, ConfigError
from message_events.metrics import DEAD_LETTERS, EVENTS_ACCEPTED, HTTP_REQUESTS
from message_events.settings import Settings
from schemas.events import DELIVERY_TYPES, INBOUND_TYPES, MMS_TYPES

log = logging.getLogger(__name__)

CALLBACK_PATH = "/callbacks/messaging"
OPENAPI_PATH = "/openapi.json"
REQUEST_ID_HEADER = "X-Request-Id"
INGRESS_KEY = web.AppKey("ingress", Ingress)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_REQUEST_ID_KEY = web.RequestKey("request_id", str)

# Types outside this set count as "other" in the metrics, so a sender cannot
# grow the label set without bound.
_KNOWN_TYPES = INBOUND_TYPES | DELIVERY_TYPES | MMS_TYPES


def create_app(
    settings: Settings,
    *,
    auth_required: bool = True,
    producer: Any | None = None,
) -> web.Application:
    """The ingress application; its start-up and clean-up run the ``Ingress``.

    Raises ``ConfigError`` when authentication is required but no
    credentials are configured.
    """
    credentials = settings.credentials()
    if auth_required and not credentials:
        msg = "CALLBACK_USERNAME and CALLBACK_PASSWORD are required unless --no-auth"
        raise ConfigError(msg, key="CALLBACK_USERNAME")

    ingress = Ingress(settings, producer=producer)
    callbacks = _Callbacks(settings, ingress, credentials if auth_required else None)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[INGRESS_KEY] = ingress
    app.router.add_post(CALLBACK_PATH, callbacks.handle)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get(OPENAPI_PATH, _openapi)
    app.on_response_prepare.append(_echo_request_id)
    app.cleanup_ctx.append(_run_ingress)
    return app


def request_id(request: web.Request) -> str:
    """The request's id: the caller's ``X-Request-Id`` if sane, else a new one."""
    if _REQUEST_ID_KEY in request:
        return request[_REQUEST_ID_KEY]
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    rid = offered if _REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    request[_REQUEST_ID_KEY] = rid
    return rid


class _Callbacks:
    """The callback endpoint: authenticate, read, route, publish, answer."""

    def __init__(
        self,
        settings: Settings,
        ingress: Ingress,
        credentials: Mapping[str, str] | None,
    ) -> None:
        self._settings = settings
        self._ingress = ingress
        self._credentials = credentials

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one callback POST, then count and log it."""
        started = time.perf_counter()
        fields: dict[str, Any] = {
            "requestId": request_id(request),
            "status": 500,
            "items": 0,
            "accepted": 0,
            "deadLettered": 0,
        }
        try:
            response = await self._answer(request, fields)
            fields["status"] = response.status
            return response
        finally:
            fields["durationMs"] = round((time.perf_counter() - started) * 1000, 1)
            HTTP_REQUESTS.labels(str(fields["status"])).inc()
            _log_callback(request, fields)

    async def _answer(
        self, request: web.Request, fields: dict[str, Any]
    ) -> web.Response:
        rid: str = fields["requestId"]
        received_at = utc_now()
        # Nothing of the body is read before the caller is known.
        if not self._authenticated(request):
            return self._challenge(rid)

        try:
            items = parse_items(await self._read_body(request))
        except BodyTooLarge as exc:
            fields["error"] = exc.message
            return _json_error(413, exc.message, rid)
        except BodyTooSlow as exc:
            fields["error"] = exc.message
            response = _json_error(408, exc.message, rid)
            # The rest may never come: the connection is not kept; what still
            # arrives is dropped for at most lingering_time (IngressServer),
            # then it is closed.
            response.force_close()
            return response
        except InvalidBody as exc:
            fields["error"] = exc.message
            response = _json_error(400, exc.message, rid)
            if isinstance(exc, BodyUnreadable):
                response.force_close()
            return response

        fields["items"] = len(items)
        routed = route_items(
            items, settings=self._settings, request_id=rid, received_at=received_at
        )
        if routed.records:
            try:
                await self._ingress.publish(routed.records, request_id=rid)
            except BrokerError as exc:
                fields["error"] = str(exc)
                log.warning("callback not published", extra={"fields": fields})
                return self._unavailable(rid)

        _count(routed)
        fields["accepted"] = len(routed.accepted_types)
        fields["deadLettered"] = len(routed.dead_letter_kinds)
        answer = Accepted(
            accepted=fields["accepted"],
            deadLettered=fields["deadLettered"],
            requestId=rid,
        )
        return _json(200, answer)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            # Refused before a byte of it is read.
            msg = f"body exceeds {limit} bytes"
            raise BodyTooLarge(msg, limit=limit)
        timeout_ms = self._settings.body_read_timeout_ms
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                return await read_capped(request.content, limit)
        except TimeoutError:
            msg = f"body not received within {timeout_ms} ms"
            raise BodyTooSlow(msg) from None
        except RequestPayloadError as exc:
            # A broken chunked framing or Content-Encoding: the bytes cannot
            # be known. Marking the stream as ended keeps aiohttp from reading
            # the rest after the answer, which would only raise the same error.
            request.content.feed_eof()
            msg = f"body could not be read ({type(exc.__cause__).__name__})"
            raise BodyUnreadable(msg) from None
        except ConnectionResetError:
            msg = "the client closed the connection while sending the body"
            raise BodyUnreadable(msg) from None

    def _authenticated(self, request: web.Request) -> bool:
        if self._credentials is None:
            return True
        header = request.headers.get(hdrs.AUTHORIZATION)
        return check_basic_auth(header, self._credentials) is AuthOutcome.ACCEPTED

    def _challenge(self, rid: str) -> web.Response:
        response = _json_error(401, "authentication required", rid)
        response.headers[hdrs.WWW_AUTHENTICATE] = challenge(self._settings.auth_realm)
        return response

    def _unavailable(self, rid: str) -> web.Response:
        response = _json_error(503, "event store unavailable, retry later", rid)
        response.headers[hdrs.RETRY_AFTER] = str(self._settings.retry_after_seconds)
        return response


def _count(routed: Routed) -> None:
    for event_type in routed.accepted_types:
        label = event_type if event_type in _KNOWN_TYPES else "other"
        EVENTS_ACCEPTED.labels(label).inc()
    for kind in routed.dead_letter_kinds:
        DEAD_LETTERS.labels(kind).inc()


def _log_callback(request: web.Request, fields: dict[str, Any]) -> None:
    # Bandwidth's first POST of every callback is an unauthenticated probe
    # that expects the 401 challenge: routine, so kept out of INFO.
    challenged = fields["status"] == 401 and hdrs.AUTHORIZATION not in request.headers
    level = logging.DEBUG if challenged else logging.INFO
    log.log(level, "callback answered", extra={"fields": fields})


def _json_error(status: int, error: str, rid: str) -> web.Response:
    return _json(status, Refused(error=error, requestId=rid))


def _json(status: int, answer: Answer) -> web.Response:
    return web.Response(
        status=status, body=answer.to_json(), content_type="application/json"
    )


async def _healthz(request: web.Request) -> web.Response:
    return _json(200, Health(status="ok"))


async def _readyz(request: web.Request) -> web.Response:
    if await request.app[INGRESS_KEY].ready():
        return _json(200, Readiness(status="ready"))
    return _json(503, Readiness(status="unavailable"))


async def _openapi(request: web.Request) -> web.Response:
    # Imported here so ``python -m ingest.openapi`` does not import itself
    # through the package first.
    from ingest.openapi import document_bytes

    return web.Response(body=document_bytes(), content_type="application/json")


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(), headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST}
    )


async def _echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[REQUEST_ID_HEADER] = request_id(request)


async def _run_ingress(app: web.Application) -> AsyncIterator[None]:
    ingress = app[INGRESS_KEY]
    await ingress.start()
    yield
    await ingress.stop()
