"""The benchmark's own logic: its bodies, its summary line and its verdicts."""

from __future__ import annotations

import math

import orjson
import pytest

from bench import bodies, report
from schemas.events import CallbackEvent
from schemas.identity import event_identity

MEASURED: dict[str, float | None] = {
    "raw_events_per_s": 20000.0,
    "ingest_events_per_s": 9000.0,
    "naive_events_per_s": 2500.0,
    "ingest_p99_ms": 20.0,
    "processor_events_per_s": 26000.0,
    "faust_events_per_s": 2000.0,
    "restore_entries_per_s": 250000.0,
    "dedup_bytes_per_entry": 86.04,
    "e2e_p99_ms": 150.0,
}


def test_bodies_hold_ten_unique_events_the_ingress_accepts() -> None:
    """Every generated event validates, and its eventId is the schema's."""
    made = bodies.bodies("t", 5)

    events = [event for body in made for event in body.events]
    assert [len(body.events) for body in made] == [10] * 5
    assert len({event.event_id for event in events}) == 50
    for body in made:
        items = orjson.loads(body.data)
        assert [orjson.dumps(item) for item in items] == [e.raw for e in body.events]
    for event in events:
        parsed = CallbackEvent.model_validate_json(event.raw)
        assert parsed.message.id.encode() == event.key
        assert event_identity(parsed).event_id == event.event_id


def test_bodies_continue_where_a_step_left_off() -> None:
    """Bodies made from a later start repeat no message id of earlier ones."""
    first = bodies.bodies("t", 3)
    later = bodies.bodies("t", 3, start=30)

    ids = [e.key for body in first + later for e in body.events]
    assert len(set(ids)) == 60


def test_summary_line_parses_back_from_the_end_of_the_output() -> None:
    """The last JSON line of the output is read back with every key."""
    output = "| table |\n{not the summary}\n" + report.summary_line(MEASURED) + "\n"

    parsed = report.parse_summary(output)

    assert list(parsed) == list(report.SUMMARY_KEYS)
    assert parsed["dedup_bytes_per_entry"] == 86.0


def test_summary_line_writes_missing_figures_as_null() -> None:
    """A part that did not run is null, not NaN (which is not JSON)."""
    line = report.summary_line({**MEASURED, "faust_events_per_s": math.nan})

    assert orjson.loads(line)["faust_events_per_s"] is None


def test_parse_summary_refuses_a_line_without_every_key() -> None:
    """An incomplete summary is an error, not silently partial."""
    with pytest.raises(ValueError, match="lacks"):
        report.parse_summary('{"raw_events_per_s": 1}')


def test_targets_are_met_missed_or_not_measured() -> None:
    """Each target compares the right figures against its bound."""
    verdicts = {t.name: t.met for t in report.evaluate(MEASURED)}

    assert verdicts == {
        "ingress / raw producer": False,
        "ingress p99 at 50 % (ms)": True,
        "end-to-end p99 at 50 % (ms)": False,
        "slowest processor (events/s)": True,
        "slowest processor / Faust": True,
        "dedup restore (entries/s)": True,
        "dedup memory (bytes/entry)": True,
    }
    unmeasured = report.evaluate({**MEASURED, "faust_events_per_s": None})
    assert [t.met for t in unmeasured if "Faust" in t.name] == [None]


def test_table_names_every_verdict() -> None:
    """The table holds the figures and a verdict row per target."""
    results = {
        "summary": MEASURED,
        "processors": {"delivery": 26000.0},
        "cpu": {"ingress": {"seconds": 40, "bench_cores": 1.5, "other_cores": 0.25}},
    }

    text = report.table(results)

    assert "| processor delivery (dedup on) | 26,000 |" in text
    assert "| ingress | 40 | 1.50 | 0.25 |" in text
    assert text.count("| met |") == 5
    assert text.count("| MISSED |") == 2
