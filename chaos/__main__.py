"""``python -m chaos``: the bounded chaos run of ``make chaos``."""

from chaos.run import main

raise SystemExit(main())
