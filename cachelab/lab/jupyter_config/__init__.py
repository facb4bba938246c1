"""Config for the Jupyter tools the lab starts: HTML exports that work offline.

A widget's live view needs a kernel, and its renderer comes from a CDN; each of the lab's
widgets also carries a self-contained HTML view. These config files make nbconvert (the
File menu's export, ``jupyter nbconvert``) prefer that HTML, so an export plays offline.
``cachelab lab`` puts this folder first on ``JUPYTER_CONFIG_PATH``.
"""

from __future__ import annotations

import json
from pathlib import Path

PATH = Path(__file__).resolve().parent
PRIORITY: list[str] = json.loads((PATH / "jupyter_nbconvert_config.json").read_text())[
    "NbConvertBase"
]["display_data_priority"]
"""Output types an export shows, best first: a widget's static HTML wins over its live view."""
