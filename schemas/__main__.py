"""Write the JSON Schema of every output topic: ``python -m schemas``."""

from __future__ import annotations

import sys
from pathlib import Path

from schemas.generate import render_all


def main() -> int:
    """Regenerate the committed schema files next to this module."""
    folder = Path(__file__).parent
    for name, text in render_all().items():
        (folder / name).write_text(text, encoding="utf-8")
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
