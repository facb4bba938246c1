"""The lab as a static site: every notebook executed, exported to HTML that works offline.

Each page is nbconvert's lab template minus everything it would fetch (require.js,
MathJax, mermaid, the widget manager): the trace viewer and the panels display their
own self-contained HTML instead of a live widget, so a page needs no kernel and no
internet. ``build_site`` writes one page per notebook and an index.

Each notebook runs in a temporary folder (its kernel's working directory and sockets), so
building from an installed package never writes into it.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from traitlets.config import Config

from cachelab.lab.jupyter_config import PRIORITY, kernel_config

TEMPLATES = Path(__file__).resolve().parent / "site_template"
_LINK = re.compile(r'href="(\d\d-[\w.-]+)\.ipynb"')


def execute(path: Path, timeout: int = 300) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook top to bottom in a fresh kernel; the notebook and the seconds it took."""
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    saved = os.environ.pop("MPLBACKEND", None)  # the kernel keeps its inline backend
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="cachelab-site-") as scratch:
            client = NotebookClient(
                notebook,
                timeout=timeout,
                kernel_name="python3",
                resources={"metadata": {"path": scratch}},  # the kernel's cwd
                config=Config(kernel_config(Path(scratch))),
            )
            client.execute()
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved
    notebook.metadata.pop("widgets", None)  # live widget state: a page has no kernel
    return notebook, time.monotonic() - started


def exporter() -> HTMLExporter:
    """nbconvert's HTML exporter with the offline template and output priority."""
    config = Config({"NbConvertBase": {"display_data_priority": PRIORITY}})
    return HTMLExporter(  # type: ignore[no-untyped-call]
        config=config, template_name="cachelab_site", extra_template_basedirs=[str(TEMPLATES)]
    )


def title(notebook: nbformat.NotebookNode, fallback: str) -> str:
    """The first markdown heading, or ``fallback``."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return str(line[2:]).strip()
    return fallback


def nav(names: Sequence[str], i: int) -> str:
    """Links to the index and the previous and next pages."""
    parts = ['<a href="index.html">index</a>']
    if i > 0:
        parts.append(f'<a href="{names[i - 1]}.html">← {html.escape(names[i - 1])}</a>')
    if i + 1 < len(names):
        parts.append(f'<a href="{names[i + 1]}.html">{html.escape(names[i + 1])} →</a>')
    return " · ".join(parts)


def page(notebook: nbformat.NotebookNode, nav_html: str) -> str:
    """One notebook as an offline HTML page; links to notebooks point at their pages."""
    body, _ = exporter().from_notebook_node(notebook, resources={"cachelab_nav": nav_html})
    return _LINK.sub(r'href="\1.html"', str(body))


def index(entries: Sequence[tuple[str, str, float]]) -> str:
    """The site's front page: every notebook with its title and the time it took to run."""
    rows = "".join(
        f'<li><a href="{name}.html">{html.escape(label)}</a> '
        f'<small>({seconds:.1f} s to run)</small></li>'
        for name, label, seconds in entries
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cachelab lab</title>'
        "</head><body style=\"font:16px system-ui,sans-serif;max-width:50em;margin:2em auto\">"
        "<h1>cachelab: the lab</h1><p>Every notebook, executed. The trace viewers play "
        f"without a kernel; the control panels need one (<code>cachelab lab</code>).</p><ol>{rows}"
        "</ol></body></html>"
    )


def select(notebooks: Path, only: Sequence[str] = ()) -> list[Path]:
    """The notebooks whose names start with one of ``only`` (all without it), in order."""
    paths = sorted(notebooks.glob("*.ipynb"))
    missing = [prefix for prefix in only if not any(p.name.startswith(prefix) for p in paths)]
    if missing:
        raise ValueError(
            f"no notebook starts with {', '.join(map(repr, missing))}; "
            f"there are {', '.join(p.stem for p in paths)}"
        )
    return [p for p in paths if not only or p.name.startswith(tuple(only))]


def build_site(
    notebooks: Path, out: Path, *, timeout: int = 300, only: Sequence[str] = ()
) -> Path:
    """Execute the notebooks (or those whose names start with one of ``only``) into ``out``."""
    paths = select(notebooks, only)
    out.mkdir(parents=True, exist_ok=True)
    names = [p.stem for p in paths]
    entries: list[tuple[str, str, float]] = []
    for i, path in enumerate(paths):
        notebook, seconds = execute(path, timeout)
        (out / f"{path.stem}.html").write_text(page(notebook, nav(names, i)), encoding="utf-8")
        entries.append((path.stem, title(notebook, path.stem), seconds))
        print(f"{path.name}: {seconds:.1f} s", flush=True)
    (out / "index.html").write_text(index(entries), encoding="utf-8")
    return out / "index.html"
