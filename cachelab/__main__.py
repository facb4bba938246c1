"""``python -m cachelab``: the same command as ``cachelab``."""

from cachelab.cli import main

raise SystemExit(main())
