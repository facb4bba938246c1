"""The lab: the notebooks (package data), their widgets and plots, the challenges, the offline
site, the Jupyter configuration, and ``workcopy``: the ``cachelab lab`` and ``cachelab site``
commands, which copy the notebooks into a folder of the user's. The near cache never imports
it."""

from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
"""The notebooks as the package ships them (read-only: the lab serves a copy)."""
