"""The console script: help everywhere, settings errors, and ``run`` end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from message_events.broker import free_port
from message_events.cli import main
from message_events.settings import EVENTS_TOPIC, Settings
from message_events.topics import ensure_topics
from tests.kafka_helpers import FIXTURES, publish_events, synthetic_statuses, wait_until

COMMAND = [sys.executable, "-m", "message_events.cli"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["ingest"],
        ["process"],
        ["topics"],
        ["tail"],
    ],
)
def test_every_command_has_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``--help`` works on the script and each subcommand."""
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])

    assert exited.value.code == 0
    assert "usage: message-events" in capsys.readouterr().out


def test_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid environment value stops the command and names the key."""
    monkeypatch.setenv("PUBLISH_DEADLINE_MS", "soon")

    status = main(["topics"])

    assert status == 2
    assert "PUBLISH_DEADLINE_MS" in capsys.readouterr().err


def test_ingest_refuses_to_start_without_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without credentials and without ``--no-auth`` the ingress will not run."""
    status = main(["ingest", "--port", "0"])

    assert status == 2
    assert "CALLBACK_USERNAME" in capsys.readouterr().err


async def _tail(env: dict[str, str], topic: str, cwd: Path) -> list[dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "tail",
        topic,
        "--idle-timeout",
        "2",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    return [orjson.loads(line) for line in out.splitlines()]


async def test_run_twice_posted_batch_gives_one_record_per_event(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """``run`` on its own embedded broker, the mixed fixture posted twice."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in {n.upper() for n in Settings.model_fields}
    }
    env.update(
        CALLBACK_USERNAME="local", CALLBACK_PASSWORD="pa:ss-wörd", LOG_FORMAT="json"
    )
    body = (FIXTURES / "tricky_mixed_batch.json").read_bytes()
    auth = {"Authorization": aiohttp.encode_basic_auth("local", "pa:ss-wörd")}
    url = f"http://127.0.0.1:{port}/callbacks/messaging"
    server = subprocess.Popen(  # noqa: ASYNC220
        [*COMMAND, "run", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, timeout_s=60, what="ingress ready")
            for _ in range(2):
                async with session.post(url, data=body, headers=auth) as response:
                    assert response.status == 200
                    assert (await response.json())["accepted"] == 5

        assert (tmp_path / ".message-events-broker").exists()
        deadline = time.monotonic() + 60
        seen: dict[str, list[dict[str, object]]] = {}
        wanted = {
            "messaging.inbound": 1,
            "messaging.delivery-status": 3,
            "messaging.mms-progress": 1,
        }
        while time.monotonic() < deadline:
            seen = {t: await _tail(env, t, tmp_path) for t in wanted}
            if all(len(seen[t]) >= n for t, n in wanted.items()):
                break
        # Once every expected record is there, read again: a duplicate that
        # was still on its way would show now.
        seen = {t: await _tail(env, t, tmp_path) for t in wanted}
        counts = {t: len(records) for t, records in seen.items()}
    finally:
        server.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.wait, 30)

    assert server.returncode == 0
    assert counts == wanted
    assert not (tmp_path / ".message-events-broker").exists()


async def test_tail_stops_after_max_records(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--max N`` prints N records even when a batch spans partitions."""
    settings = make_settings()
    await ensure_topics(settings)
    assert settings.kafka_bootstrap_servers is not None
    topic = settings.topic(EVENTS_TOPIC)
    await publish_events(
        settings.kafka_bootstrap_servers, topic, synthetic_statuses(12)
    )
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)

    status = await asyncio.to_thread(
        main, ["tail", topic, "--max", "3", "--idle-timeout", "5"]
    )

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert len(lines) == 3
    assert all(orjson.loads(line)["topic"] == topic for line in lines)


@pytest.mark.parametrize(
    "env",
    [
        pytest.param(
            {"CALLBACK_USERNAME": "", "CALLBACK_PASSWORD": ""}, id="empty-pair"
        ),
        pytest.param(
            {"CALLBACK_USERNAME": "u", "CALLBACK_PASSWORD": ""}, id="empty-password"
        ),
        pytest.param(
            {"CALLBACK_EXTRA_CREDENTIALS": '{"": "x"}'}, id="empty-extra-user"
        ),
    ],
)
def test_empty_credentials_are_refused(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty username or password would accept ``Basic Og==``: refused at start."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    status = main(["ingest", "--port", "0"])

    assert status == 2
    assert "must not be empty" in capsys.readouterr().err
