"""The committed JSON Schemas match the models, and the models read the fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.events import CallbackEvent
from schemas.generate import render_all
from tests.kafka_helpers import FIXTURES, fixture_items

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


@pytest.mark.parametrize("name", sorted(render_all()))
def test_committed_schema_is_in_sync(name: str) -> None:
    """Each schema file equals what ``python -m schemas`` writes today."""
    expected = render_all()[name]

    committed = (SCHEMA_DIR / name).read_text(encoding="utf-8")

    assert committed == expected, f"run `make schemas`: {name} is stale"


def test_every_fixture_item_validates() -> None:
    """All items of all fixtures are routable events."""
    count = 0
    for path in sorted(FIXTURES.glob("*.json")):
        for raw in fixture_items(path.name):
            CallbackEvent.model_validate_json(raw)
            count += 1

    assert count == 37


def test_unknown_fields_and_types_are_kept() -> None:
    """An invented type and an unknown key pass validation and stay readable."""
    (raw,) = fixture_items("tricky_unrecognised_type_synthetic.json")

    event = CallbackEvent.model_validate_json(raw)

    assert event.type == "message-expired"
    assert event.model_extra, "the unknown top-level key is kept"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"type": None}, "type", id="type-null"),
        pytest.param({"time": "yesterday"}, "time", id="time-not-rfc3339"),
        pytest.param({"time": "2026-03-02T18:00:00"}, "time", id="time-no-offset"),
        pytest.param({"to": 15555550100}, "to", id="to-number"),
        pytest.param({"errorCode": "4770"}, "errorCode", id="errorcode-string"),
        pytest.param({"message": {"owner": "x"}}, "message.id", id="no-message-id"),
    ],
)
def test_unroutable_items_are_rejected(change: dict[str, object], field: str) -> None:
    """Items missing what routing and identity need fail with the field named."""
    item = json.loads(fixture_items("message_failed.json")[0])
    item.update(change)

    with pytest.raises(ValidationError) as caught:
        CallbackEvent.model_validate(item)

    locations = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    assert field in locations


def test_message_to_as_string_is_rejected() -> None:
    """``message.to`` is always an array in callbacks; a string is not routable."""
    item = json.loads(fixture_items("incoming_single_sms.json")[0])
    item["message"]["to"] = "+15555550100"

    with pytest.raises(ValidationError):
        CallbackEvent.model_validate(item)


def test_time_formats_are_all_accepted_and_kept() -> None:
    """No fraction, milliseconds and microseconds all validate, text unchanged."""
    times = [
        CallbackEvent.model_validate_json(raw).time
        for raw in fixture_items("tricky_time_formats.json")
    ]

    assert times == [
        "2026-03-02T21:00:00Z",
        "2026-03-02T21:00:00.123Z",
        "2026-03-02T21:00:00.123456Z",
    ]


def test_asyncapi_describes_every_topic() -> None:
    """Each declared topic is a channel with its partitions, policy and writer."""
    from message_events.settings import Settings
    from message_events.topics import declared_topics
    from schemas.asyncapi import build

    document = build()
    channels = {c["address"]: c for c in document["channels"].values()}

    specs = declared_topics(Settings.model_construct())
    assert sorted(channels) == sorted(s.name for s in specs)
    for spec in specs:
        binding = channels[spec.name]["bindings"]["kafka"]
        assert binding["partitions"] == spec.partitions
        assert binding["topicConfiguration"][
            "cleanup.policy"
        ] == spec.cleanup_policy.split(",")
        assert spec.writer in channels[spec.name]["description"]
    inbound = document["components"]["messages"]["messaging_inbound"]["payload"]
    assert "conversationId" in inbound["properties"]
