"""``python -m cachelab``: the same command as ``cachelab``."""

from cachelab.harness.cli import main

raise SystemExit(main())
