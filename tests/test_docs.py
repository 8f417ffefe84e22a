"""Generated documentation is committed in sync with the code."""

from __future__ import annotations

from message_events.docs import README, render, settings_table, topics_table
from message_events.settings import Settings


def test_readme_tables_are_in_sync() -> None:
    """README.md equals what ``make docs`` would write today."""
    text = README.read_text(encoding="utf-8")

    assert render(text) == text, "run `make docs` and commit README.md"


def test_every_setting_is_documented() -> None:
    """Each settings field appears in the table with a description."""
    table = settings_table()

    for name, field in Settings.model_fields.items():
        assert f"| `{name.upper()}` |" in table
        assert field.description, f"{name} has no description"


def test_topics_table_names_every_processor_topic() -> None:
    """The topics table lists the three dedup topics and the three outputs."""
    table = topics_table()

    for name in ("inbound", "delivery", "mms"):
        assert f"`message-events.{name}.dedup`" in table
    for topic in (
        "messaging.inbound",
        "messaging.delivery-status",
        "messaging.mms-progress",
    ):
        assert f"`{topic}`" in table


def test_render_fills_an_empty_section() -> None:
    """A section with nothing between its markers gets the table."""
    text = (
        "<!-- settings:start -->\n<!-- settings:end -->\n"
        "<!-- topics:start -->\nold\n<!-- topics:end -->\n"
    )

    rendered = render(text)

    assert settings_table() in rendered
    assert topics_table() in rendered
    assert "old" not in rendered
