"""The lab: the notebooks (package data), their widgets and plots, the challenges, the offline
site and the Jupyter configuration. The near cache never imports it."""

from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
"""The notebooks as the package ships them (read-only: the lab serves a copy)."""
