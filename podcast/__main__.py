"""``python -m podcast``: see :mod:`podcast.cli`."""

from .cli import main

raise SystemExit(main())
