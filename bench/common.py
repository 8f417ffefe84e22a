"""
Helpers shared by the benchmark's processes: settings, timing, JSON results.

Every worker process (``python -m bench.<part>``) reads its settings from the
environment like the product's commands do, writes progress to stderr and
prints exactly one JSON object, its result, as the last line of stdout.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import orjson

from message_events.settings import Settings, load_settings


def settings(**overrides: Any) -> Settings:
    """The product's settings from the environment, with overrides."""
    return load_settings(**overrides)


def progress(message: str) -> None:
    """One line of progress on stderr."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """Print a worker's result as the last line of stdout."""
    sys.stdout.write(
        orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode() + "\n"
    )
    sys.stdout.flush()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` percentile (0-100) of values, nearest rank; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
