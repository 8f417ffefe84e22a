"""
Generated parts of the README: the settings and topics tables.

``python -m message_events.docs`` rewrites the text between the
``<!-- name:start -->`` and ``<!-- name:end -->`` markers of README.md;
``tests/test_docs.py`` fails when the committed README is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import SecretStr

from message_events.settings import Settings
from message_events.topics import declared_topics
from schemas.generate import TOPIC_MODELS, schema_file

README = Path(__file__).resolve().parents[1] / "README.md"


def settings_table() -> str:
    """Markdown table of every setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr) or default in (None, {}, ""):
            shown = "—"
        else:
            shown = f"`{default}`"
        rows.append(f"| `{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def topics_table() -> str:
    """Markdown table of every topic with the default settings."""
    rows = [
        "| topic | partitions | key | value | cleanup policy | writer |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    # Defaults only: the shell's environment must not change the README.
    for spec in declared_topics(Settings.model_construct()):
        policy = spec.cleanup_policy
        if "retention.ms" in spec.config:
            hours = int(spec.config["retention.ms"]) // 3_600_000
            policy = f"{policy}, {hours} h"
        value = spec.value
        if spec.name in TOPIC_MODELS:
            value = f"[{value}](schemas/{schema_file(spec.name)})"
        rows.append(
            f"| `{spec.name}` | {spec.partitions} | {spec.key} | {value} "
            f"| {policy} | `{spec.writer}` |"
        )
    return "\n".join(rows)


SECTIONS = {"settings": settings_table, "topics": topics_table}


def render(text: str) -> str:
    """The README text with every generated section brought up to date."""
    for name, build in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- {name}:start -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.DOTALL
        )
        body = build()

        def replace(match: re.Match[str], body: str = body) -> str:
            return match.group(1) + body + "\n" + match.group(2)

        text, found = pattern.subn(replace, text)
        if found != 1:
            msg = f"README.md needs exactly one {name}:start/{name}:end pair"
            raise ValueError(msg)
    return text


def main() -> int:
    """Rewrite the generated sections of README.md."""
    README.write_text(render(README.read_text(encoding="utf-8")), encoding="utf-8")
    print("README.md tables regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
