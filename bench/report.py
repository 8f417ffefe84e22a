"""
The benchmark's figures: targets, the table, the summary line and the plot.

The summary line is the last line ``make bench`` prints: one JSON object with
the headline figures (``SUMMARY_KEYS``). ``parse_summary`` reads it back from
any output, ``evaluate`` checks the figures against the targets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import orjson

SUMMARY_KEYS = (
    "raw_events_per_s",
    "ingest_events_per_s",
    "naive_events_per_s",
    "ingest_p99_ms",
    "processor_events_per_s",
    "faust_events_per_s",
    "restore_entries_per_s",
    "dedup_bytes_per_entry",
    "e2e_p99_ms",
)


class Target(NamedTuple):
    """One target: its name, the measured figure, the bound, and the verdict."""

    name: str
    measured: float | None
    bound: str
    met: bool | None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _check(value: float | None, ok: bool) -> bool | None:
    return None if value is None or math.isnan(value) else ok


def evaluate(summary: Mapping[str, float | None]) -> list[Target]:
    """Every target of issue 4, met (True), missed (False) or not measured."""
    ingest_share = _ratio(
        summary.get("ingest_events_per_s"), summary.get("raw_events_per_s")
    )
    p99 = summary.get("ingest_p99_ms")
    e2e = summary.get("e2e_p99_ms")
    proc = summary.get("processor_events_per_s")
    faust_x = _ratio(proc, summary.get("faust_events_per_s"))
    restore = summary.get("restore_entries_per_s")
    per_entry = summary.get("dedup_bytes_per_entry")
    return [
        Target(
            "ingress / raw producer",
            ingest_share,
            ">= 0.50",
            _check(ingest_share, (ingest_share or 0) >= 0.5),
        ),
        Target("ingress p99 at 50 % (ms)", p99, "<= 25", _check(p99, (p99 or 0) <= 25)),
        Target(
            "end-to-end p99 at 50 % (ms)", e2e, "<= 100", _check(e2e, (e2e or 0) <= 100)
        ),
        Target(
            "slowest processor (events/s)",
            proc,
            ">= 25000",
            _check(proc, (proc or 0) >= 25000),
        ),
        Target(
            "slowest processor / Faust",
            faust_x,
            ">= 5",
            _check(faust_x, (faust_x or 0) >= 5),
        ),
        Target(
            "dedup restore (entries/s)",
            restore,
            ">= 200000",
            _check(restore, (restore or 0) >= 200000),
        ),
        Target(
            "dedup memory (bytes/entry)",
            per_entry,
            "<= 100",
            _check(per_entry, (per_entry or 0) <= 100),
        ),
    ]


def summary_line(summary: Mapping[str, float | None]) -> str:
    """The last line of the run: the headline figures as one JSON object."""
    picked = {}
    for key in SUMMARY_KEYS:
        value = summary.get(key)
        picked[key] = None if value is None or math.isnan(value) else round(value, 1)
    return orjson.dumps(picked).decode()


def parse_summary(output: str) -> dict[str, float | None]:
    """The summary object of a run's output: its last line holding JSON."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            parsed = orjson.loads(line)
            missing = [k for k in SUMMARY_KEYS if k not in parsed]
            if missing:
                msg = f"summary line lacks {', '.join(missing)}"
                raise ValueError(msg)
            return {k: parsed[k] for k in SUMMARY_KEYS}
    msg = "no summary line in the output"
    raise ValueError(msg)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def table(results: Mapping[str, Any]) -> str:
    """The readable result table (Markdown, so the README can hold it)."""
    s = results["summary"]
    raw = s.get("raw_events_per_s")
    rows = [
        ("raw aiokafka producer (ceiling)", _fmt(raw), "events/s", ""),
        (
            "ingress at saturation",
            _fmt(s.get("ingest_events_per_s")),
            "events/s",
            f"{_fmt(_ratio(s.get('ingest_events_per_s'), raw), 2)} of raw",
        ),
        (
            "naive endpoint (send_and_wait per item)",
            _fmt(s.get("naive_events_per_s")),
            "events/s",
            f"{_fmt(_ratio(s.get('naive_events_per_s'), raw), 2)} of raw",
        ),
        (
            "ingress p50 / p99 at 50 % of saturation",
            f"{_fmt(results.get('ingest_p50_ms'), 1)} / "
            f"{_fmt(s.get('ingest_p99_ms'), 1)}",
            "ms",
            f"at {_fmt(results.get('half_load_events_per_s'))} events/s",
        ),
    ]
    half = results.get("ingest_half_step", {})
    if "server_p99_ms" in half:
        rows.append(
            (
                "the ingress's own time in the handler, p50 / p99",
                f"{_fmt(half['server_p50_ms'], 1)} / {_fmt(half['server_p99_ms'], 1)}",
                "ms",
                "same step, from its log; loader lag p99 "
                f"{_fmt(half.get('loader_lag_p99_ms'), 1)} ms",
            )
        )
    cpu = results.get("processors_cpu_us", {})
    for name, figure in sorted(results.get("processors", {}).items()):
        note = f"{_fmt(cpu.get(name), 1)} us CPU per event" if name in cpu else ""
        rows.append(
            (f"processor {name} (dedup on)", _fmt(figure), "input events/s", note)
        )
    faust = results.get("faust", {})
    rows.append(
        (
            "Faust peer (Table dedup)",
            _fmt(s.get("faust_events_per_s")),
            "input events/s",
            faust.get("error", "")[:60],
        )
    )
    restore = results.get("restore", {})
    rows.append(
        (
            "dedup restore",
            _fmt(s.get("restore_entries_per_s")),
            "entries/s",
            f"{_fmt(restore.get('entries'))} entries in "
            f"{_fmt(restore.get('seconds'), 2)} s",
        )
    )
    rows.append(
        (
            "dedup state memory",
            _fmt(s.get("dedup_bytes_per_entry"), 1),
            "bytes/entry",
            "tracemalloc",
        )
    )
    e2e = results.get("e2e", {})
    rows.append(
        (
            "end to end p50 / p99 at 50 %",
            f"{_fmt(e2e.get('p50_ms'), 1)} / {_fmt(s.get('e2e_p99_ms'), 1)}",
            "ms",
            f"at {_fmt(e2e.get('offered_events_per_s'))} events/s; "
            f"{_fmt(e2e.get('matched'))} of {_fmt(e2e.get('expected'))} seen",
        )
    )
    low = results.get("e2e_low", {})
    if low:
        rows.append(
            (
                "end to end p50 / p99 at 20 %",
                f"{_fmt(low.get('p50_ms'), 1)} / {_fmt(low.get('p99_ms'), 1)}",
                "ms",
                f"at {_fmt(low.get('offered_events_per_s'))} events/s",
            )
        )
    lines = ["| measure | figure | unit | note |", "| --- | ---: | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += [
        "",
        "| target | measured | bound | verdict |",
        "| --- | ---: | --- | --- |",
    ]
    for target in evaluate(s):
        verdict = {True: "met", False: "MISSED", None: "not measured"}[target.met]
        lines.append(
            f"| {target.name} | {_fmt(target.measured, 2)} "
            f"| {target.bound} | {verdict} |"
        )
    phases = results.get("cpu", {})
    if phases:
        lines += [
            "",
            "| part | seconds | cores used by the bench "
            "| cores used by other processes |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, use in phases.items():
            lines.append(
                f"| {name} | {_fmt(use['seconds'])} | {_fmt(use['bench_cores'], 2)} "
                f"| {_fmt(use['other_cores'], 2)} |"
            )
    return "\n".join(lines)


def plot(results: Mapping[str, Any], path: Path) -> None:
    """Response time against offered load, ingress and naive, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, style in (("ingest", "-o"), ("naive", "--s")):
        steps = results.get(f"{name}_steps", [])
        loads = [st["offered_events_per_s"] for st in steps]
        for q in ("p50", "p99"):
            ax.plot(loads, [st[f"{q}_ms"] for st in steps], style, label=f"{name} {q}")
    half = results.get("half_load_events_per_s")
    step = results.get("ingest_half_step")
    if half and step:
        ax.axvline(half, color="grey", linestyle=":", label="50 % of saturation")
        ax.plot(
            [half, half],
            [step["p50_ms"], step["p99_ms"]],
            "k^",
            label="ingest p50, p99 at 50 %",
        )
    ax.set_xlabel("offered load (events/s, 10 per body)")
    ax.set_ylabel("response time (ms)")
    ax.set_yscale("log")
    ax.set_title("POST /callbacks/messaging on the embedded broker, 2 cores")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
