"""The OpenAPI description: committed in sync, served, and held to by the
ingress under thousands of generated requests (schemathesis).

A real ingress (``IngressServer``, as in production) runs on a loopback port
in a thread of its own with a recording fake producer; schemathesis generates
requests from the description, positive and negative, sends them with the
accepted credentials and checks every answer: never a 5xx, only documented
statuses, content types, headers and bodies, authentication enforced. Each
answer is also held against what was published: a 200 published exactly its
``accepted`` events and ``deadLettered`` dead letters, anything else nothing.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema
import orjson
import pytest
import requests
import schemathesis
from aiohttp import encode_basic_auth
from hypothesis import HealthCheck, settings
from prometheus_client import REGISTRY
from schemathesis.specs.openapi.checks import positive_data_acceptance

from ingest import IngressServer
from ingest.openapi import OPENAPI_FILE, render
from message_events.settings import (
    DLQ_BLOBS_TOPIC,
    DLQ_TOPIC,
    EVENTS_TOPIC,
    Settings,
    load_settings,
)
from tests.test_ingest_http import FakeProducer

USER, PASSWORD = "bandwidth", "pa:ss-wörd"
AUTH = {"Authorization": encode_basic_auth(USER, PASSWORD)}
# Enough for thousands of requests in total while the file stays well under
# a minute: the callback operation takes nearly all of them, the probes have
# no parameters and run out of distinct requests at once.
MAX_EXAMPLES = 900
# Counted per operation and status, for the run's summary.
ANSWERS: collections.Counter[str] = collections.Counter()
# Callback POSTs answered by the ingress when the module's ingress started.
CALLBACKS_AT_START: list[float] = []


class ThreadedIngress:
    """``IngressServer`` on a free loopback port, on its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = FakeProducer()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="ingress")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        server = IngressServer(
            self.settings, host="127.0.0.1", port=0, producer=self.producer
        )
        await server.start()
        self.port = server.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()

    @property
    def base_url(self) -> str:
        """Where the ingress listens."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedIngress:
        self._thread.start()
        if not self._ready.wait(10):
            msg = "the ingress did not start"
            raise RuntimeError(msg)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


@pytest.fixture(scope="module")
def ingress() -> Iterator[ThreadedIngress]:
    """One running ingress for the whole module."""
    settings = load_settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        topic_prefix="oas.",
        callback_username=USER,
        callback_password=PASSWORD,
        max_body_bytes=8192,
        producer_max_request_bytes=2048,
        body_read_timeout_ms=2000,
    )
    with ThreadedIngress(settings) as running:
        CALLBACKS_AT_START.append(_callbacks_answered())
        yield running


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One HTTP session (kept-alive connections) for every generated request."""
    with requests.Session() as session:
        yield session


def _callbacks_answered() -> float:
    """Callback POSTs the ingress answered so far, any status."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "message_events_http_requests"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def test_committed_description_is_in_sync() -> None:
    """ingest/openapi.json equals what ``python -m ingest.openapi`` writes."""
    committed = OPENAPI_FILE.read_text(encoding="utf-8")

    assert committed == render(), "run `python -m ingest.openapi`"


def test_description_is_served_without_credentials(
    ingress: ThreadedIngress, session: requests.Session
) -> None:
    """GET /openapi.json needs no auth and answers the committed document."""
    response = session.get(f"{ingress.base_url}/openapi.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.content == OPENAPI_FILE.read_bytes()


def test_description_is_openapi_31() -> None:
    """The document is OpenAPI 3.1 and its schemas are valid JSON Schema."""
    document = orjson.loads(OPENAPI_FILE.read_bytes())

    assert document["openapi"] == "3.1.0"
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    statuses = set(document["paths"]["/callbacks/messaging"]["post"]["responses"])
    assert statuses == {"200", "400", "401", "408", "413", "503"}
    assert set(document["paths"]) == {
        "/callbacks/messaging",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }


# Loaded from the committed file, which the test above proves is the served
# one: schemathesis' fixture-based loader does not work with pytest 9 (it
# renames nodes through an attribute pytest no longer has).
schema = schemathesis.openapi.from_path(
    OPENAPI_FILE,
    config=schemathesis.Config.from_dict(
        {
            "checks": {
                # Items that do not fit the event schema are dead-lettered and
                # the body still gets 200: schema-violating bodies are accepted
                # by design.
                "negative_data_rejection": {"enabled": False},
                # Valid data is refused only past the documented body limit.
                "positive_data_acceptance": {
                    "expected-statuses": ["200", "401", "413"]
                },
            }
        }
    ),
)


def _published(producer: FakeProducer, since: int) -> collections.Counter[str]:
    """Records sent since ``since``, counted by topic (without the prefix)."""
    return collections.Counter(
        s.topic.removeprefix("oas.") for s in producer.sent[since:]
    )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_keeps_the_contract(
    case: Any, ingress: ThreadedIngress, session: requests.Session
) -> None:
    """No 5xx, only documented answers, auth enforced, and a 200 published
    exactly what it counts while any other answer published nothing."""
    # application/octet-stream stands for "any bytes": only UTF-8 JSON among
    # them is accepted.
    excluded = (
        [] if case.media_type == "application/json" else [positive_data_acceptance]
    )
    before = len(ingress.producer.sent)

    response = case.call_and_validate(
        base_url=ingress.base_url,
        session=session,
        headers=AUTH,
        excluded_checks=excluded,
        timeout=10,
    )

    ANSWERS[f"{case.method} {case.path} {response.status_code}"] += 1
    published = _published(ingress.producer, before)
    if case.path == "/callbacks/messaging" and response.status_code == 200:
        answer = response.json()
        assert published[EVENTS_TOPIC] == answer["accepted"]
        assert published[DLQ_TOPIC] == answer["deadLettered"]
        assert set(published) <= {EVENTS_TOPIC, DLQ_TOPIC, DLQ_BLOBS_TOPIC}
        if case.media_type == "application/json":
            items = case.body if isinstance(case.body, list) else [case.body]
            assert answer["accepted"] + answer["deadLettered"] == len(items)
    else:
        assert published == collections.Counter()


def test_zz_generated_requests_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last: thousands of requests were answered, none with a 5xx."""
    total = sum(ANSWERS.values())
    if total == 0:
        pytest.skip("the schemathesis test did not run in this session")
    with capsys.disabled():
        posts = _callbacks_answered() - CALLBACKS_AT_START[0]
        print(
            f"\nschemathesis: {total} generated requests; the ingress answered "
            f"{posts:.0f} callback POSTs, the checks' own probes included: "
            f"{dict(sorted(ANSWERS.items()))}"
        )

    assert total >= 1000
    assert not [key for key in ANSWERS if key.rsplit(" ", 1)[1].startswith("5")]
