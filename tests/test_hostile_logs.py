"""No phone number, message text or tag reaches a log, at any level.

The whole pipeline runs as it does in production, ``message-events run`` in
a child process with ``LOG_LEVEL=DEBUG`` and ``LOG_FORMAT=json``: every
fixture is posted, then hostile bodies of every kind (dead letters, an item
too large for a record, refused bodies, wrong credentials, a slow client).
Once the three processors have committed everything, every line the process
wrote is scanned for every phone number (with and without ``+``), message
text and tag of the fixtures and of the hostile bodies.

aiokafka logs record keys and values at DEBUG; a second test shows that it
does, that the scan finds it, and that ``message_events.logs.configure``
keeps it out even at ``LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import asyncio
import collections
import gzip
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from message_events import logs
from message_events.broker import free_port
from message_events.settings import EVENTS_TOPIC, PROCESSORS, Settings
from tests.kafka_helpers import FIXTURES, fixture_items, wait_until

pytestmark = pytest.mark.broker

COMMAND = [sys.executable, "-m", "message_events.cli"]
USER, PASSWORD = "bw-logs", "pw:logs-ü"
AUTH = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
# Personal data of the hostile bodies, on top of the fixtures'.
HOSTILE_PHONE = "+15555550177"
HOSTILE_TEXT = "hostile secret text, never to be logged"
HOSTILE_TAG = "hostile-secret-tag"
PHONE = re.compile(r"\+1555\d{7}")


def _personal_data() -> tuple[set[str], set[str]]:
    """Phone numbers, and texts and tags, of every fixture and hostile body."""
    phones = {HOSTILE_PHONE}
    words = {HOSTILE_TEXT, HOSTILE_TAG}
    for path in sorted(FIXTURES.glob("*.json")):
        raw = path.read_text(encoding="utf-8")
        phones |= set(PHONE.findall(raw))
        for item in json.loads(raw):
            message = item["message"]
            words |= {message[k] for k in ("text", "tag") if message.get(k)}
    return phones, words


def needles() -> dict[str, re.Pattern[str]]:
    """What must never appear in a log, each with the pattern that finds it
    as written, escaped in JSON, or inside the repr of bytes."""
    phones, words = _personal_data()
    found: dict[str, re.Pattern[str]] = {}
    for phone in phones:
        # "+15555550100", "15555550100" and the national "5555550100".
        found[phone] = re.compile(re.escape(phone.removeprefix("+1")))
    for word in words:
        if len(word) < 5:
            # Short tags ("ts", "ooo", "STOP") only count as a JSON string.
            found[word] = re.compile(r"""\\?["']""" + re.escape(word) + r"""\\?["']""")
            continue
        found[word] = re.compile(re.escape(word[:64]))
        # Parts of it that survive any escaping of the rest.
        for part in re.findall(r"[A-Za-z0-9 ,.?!-]{12,}", word):
            found[f"{word[:20]}… ({part[:20]})"] = re.compile(re.escape(part[:64]))
    return found


def leaks(text: str) -> list[str]:
    """Every piece of personal data found in ``text``."""
    return sorted(name for name, pattern in needles().items() if pattern.search(text))


def _item(name: str, index: int = 0) -> dict[str, Any]:
    item: dict[str, Any] = orjson.loads(fixture_items(name)[index])
    item["message"]["text"] = HOSTILE_TEXT
    item["message"]["tag"] = HOSTILE_TAG
    item["message"]["from"] = HOSTILE_PHONE
    return item


def dead_letter_bodies() -> list[bytes]:
    """Bodies whose items (some or all) are dead-lettered; each gets 200."""
    to_string = _item("incoming_single_sms.json")
    to_string["message"]["to"] = HOSTILE_PHONE
    from_object = _item("incoming_single_sms.json")
    from_object["message"]["from"] = {"number": HOSTILE_PHONE}
    code_string = _item("message_failed.json")
    code_string["errorCode"] = "4406"
    no_id = _item("message_delivered_sms.json")
    del no_id["message"]["id"]
    surrogate = orjson.dumps(_item("incoming_single_mms.json")).replace(
        b'"text":"', b'"text":"\\ud800', 1
    )
    deep = orjson.dumps(_item("message_sent.json"))[:-1] + (
        b',"deep":'
        + b"[" * 300
        + b'"'
        + HOSTILE_PHONE.encode()
        + b'"'
        + b"]" * 300
        + b"}"
    )
    too_large = _item("incoming_single_sms.json")
    too_large["message"]["text"] = (HOSTILE_TEXT + " ") * 30_000
    return [
        orjson.dumps([to_string, from_object, code_string, no_id]),
        b"[" + surrogate + b"," + deep + b"]",
        orjson.dumps([HOSTILE_PHONE, [HOSTILE_TEXT], 7, None]),
        orjson.dumps([too_large, _item("message_read_rbm.json")]),
    ]


def refused_bodies() -> list[tuple[bytes, dict[str, str], int]]:
    """Bodies refused as a whole, with extra headers and the expected status."""
    item = orjson.dumps(_item("incoming_single_sms.json"))
    return [
        (b"[" + item, {}, 400),
        (b"[" + item.replace(b"hostile", b"\xff") + b"]", {}, 400),
        (b"[" + item.replace(b"never", b"\x01") + b"]", {}, 400),
        (b"[" + item + b"] [" + item + b"]", {}, 400),
        (item + b"\x00" * 10, {"Content-Encoding": "gzip"}, 400),
        (
            gzip.compress(b"[" + item + b" " * 3_000_000 + b"]"),
            {"Content-Encoding": "gzip"},
            413,
        ),
        (
            orjson.dumps([_item("incoming_single_sms.json")]),
            {"Authorization": "Basic x"},
            401,
        ),
    ]


@pytest.fixture
def run_env(
    make_settings: Callable[..., Settings],
) -> tuple[Settings, dict[str, str]]:
    """Settings for this test's topics and the environment of a child
    ``message-events run`` reading them, at DEBUG, in JSON."""
    settings = make_settings(
        callback_username=USER,
        callback_password=PASSWORD,
        max_body_bytes=2 * 1024 * 1024,
        body_read_timeout_ms=1000,
    )
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka_bootstrap_servers),
        TOPIC_PREFIX=settings.topic_prefix,
        EVENTS_PARTITIONS=str(settings.events_partitions),
        CONSUMER_SESSION_TIMEOUT_MS=str(settings.consumer_session_timeout_ms),
        CONSUMER_HEARTBEAT_INTERVAL_MS=str(settings.consumer_heartbeat_interval_ms),
        CALLBACK_USERNAME=USER,
        CALLBACK_PASSWORD=PASSWORD,
        MAX_BODY_BYTES=str(settings.max_body_bytes),
        BODY_READ_TIMEOUT_MS=str(settings.body_read_timeout_ms),
        HTTP_HOST="127.0.0.1",
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="json",
    )
    return settings, env


async def _all_committed(settings: Settings) -> bool:
    """Whether every processor's group has committed the events topic's end."""
    topic = settings.topic(EVENTS_TOPIC)
    tps = [TopicPartition(topic, p) for p in range(settings.events_partitions)]
    for processor in PROCESSORS:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id(processor),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                    return False
        finally:
            await consumer.stop()
    return True


async def _slow_client(port: int, body: bytes) -> bytes:
    """Send the head and half of ``body``, then nothing: the answer."""
    head = (
        f"POST /callbacks/messaging HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body[: len(body) // 2])
        async with asyncio.timeout(10):
            return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_full_pipeline_at_debug_logs_no_personal_data(
    run_env: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """Every fixture and every kind of hostile body through ingress and the
    three processors at DEBUG: not one phone number, text or tag logged."""
    settings, env = run_env
    port = free_port()
    out_path, err_path = tmp_path / "run.out", tmp_path / "run.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(  # noqa: ASYNC220
            [*COMMAND, "run", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{base}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            async def post(body: bytes, headers: dict[str, str]) -> int:
                async with session.post(
                    f"{base}/callbacks/messaging",
                    data=io.BytesIO(body),
                    headers={**AUTH, **headers},
                ) as response:
                    await response.read()
                    return response.status

            await wait_until(ready, timeout_s=60, what="the ingress ready")
            for path in sorted(FIXTURES.glob("*.json")):
                statuses.append(await post(path.read_bytes(), {}))
            for body in dead_letter_bodies():
                statuses.append(await post(body, {}))
            for body, headers, _ in refused_bodies():
                statuses.append(await post(body, headers))
            statuses.append(await post(refused_bodies()[0][0], {"Authorization": ""}))
        slow = await _slow_client(port, dead_letter_bodies()[0])

        await wait_until(
            lambda: _all_committed(settings), timeout_s=90, what="processors done"
        )
    finally:
        child.send_signal(signal.SIGTERM)
        await asyncio.to_thread(child.wait, 30)
    logged = out_path.read_text(encoding="utf-8") + err_path.read_text(encoding="utf-8")
    lines = [orjson.loads(line) for line in out_path.read_bytes().splitlines()]

    fixtures = len(list(FIXTURES.glob("*.json")))
    expected = [200] * (fixtures + len(dead_letter_bodies()))
    expected += [status for _, _, status in refused_bodies()] + [401]
    assert statuses == expected
    assert slow.startswith(b"HTTP/1.1 408 ")
    assert child.returncode == 0
    assert {line["level"] for line in lines} >= {"debug", "info"}
    answered = [
        line["status"] for line in lines if line["message"] == "callback answered"
    ]
    assert sorted(answered) == sorted([*expected, 408])
    outputs: collections.Counter[str] = collections.Counter()
    for line in lines:
        if line["message"] == "batch handled":
            outputs[line["processor"]] += line["outputs"]
    assert set(outputs) == set(PROCESSORS)
    assert all(outputs.values())
    assert leaks(logged) == []


async def test_aiokafka_record_contents_stay_out_of_debug_logs(
    make_settings: Callable[..., Settings],
) -> None:
    """aiokafka at DEBUG logs a record's key and value, and the scan finds
    them; with ``logs.configure("DEBUG")`` the same send logs neither."""
    settings = make_settings()
    item = orjson.dumps(_item("incoming_single_sms.json"))

    async def send_logged(configure: bool) -> str:
        stream = io.StringIO()
        if configure:
            logs.configure("DEBUG", "json", stream)
        else:
            handler = logging.StreamHandler(stream)
            logging.getLogger().addHandler(handler)
            logging.getLogger().setLevel(logging.DEBUG)
            logging.getLogger("aiokafka").setLevel(logging.DEBUG)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic("log-probe"), item, key=HOSTILE_PHONE.encode()
            )
        finally:
            await producer.stop()
            if not configure:
                logging.getLogger().removeHandler(handler)
        return stream.getvalue()

    unguarded = await send_logged(configure=False)
    guarded = await send_logged(configure=True)

    assert HOSTILE_PHONE in leaks(unguarded)
    assert HOSTILE_TEXT in leaks(unguarded)
    assert leaks(guarded) == []
    assert logging.getLogger("aiokafka").getEffectiveLevel() == logging.WARNING
