"""``python -m podcast``: see :mod:`podcast.cli`."""

from podcast.cli import main

raise SystemExit(main())
