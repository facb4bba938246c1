"""Build cachelab/lab/notebooks/NN-*.ipynb (package data) from the percent-format sources beside this file.

Usage: .venv/bin/python notebooks/src/build.py  (rewrites every notebook it has a source for)

A source is Python with ``# %%`` cell markers: ``# %% [markdown]`` starts a markdown
cell (its lines lose their leading ``# ``), ``# %% tags=["parameters"]`` a tagged
code cell. The notebooks are written without outputs or execution counts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOKS = HERE.parents[1] / "cachelab" / "lab" / "notebooks"
MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def cells(source: str) -> list[nbformat.NotebookNode]:
    """Split a percent-format source into notebook cells."""
    out: list[nbformat.NotebookNode] = []
    kind, tags, lines = None, [], []  # type: ignore[var-annotated]

    def flush() -> None:
        text = "\n".join(lines).strip("\n")
        if kind is None or not text:
            return
        if kind == "md":
            text = "\n".join(re.sub(r"^# ?", "", line) for line in text.split("\n"))
            out.append(new_markdown_cell(text))
        else:
            cell = new_code_cell(text)
            if tags:
                cell.metadata["tags"] = tags
            out.append(cell)

    for line in source.split("\n"):
        match = MARKER.match(line)
        if match:
            flush()
            kind = "md" if match["md"] else "code"
            tags = json.loads(match["tags"]) if match["tags"] else []
            lines = []
        else:
            lines.append(line)
    flush()
    return out


def build(path: Path) -> Path:
    """Write the notebook of one source file; return its path."""
    nb = new_notebook(cells=cells(path.read_text()))
    for i, cell in enumerate(nb.cells):
        cell.id = f"{path.stem[:2]}-{i:02d}"  # stable ids keep the diffs small
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    target = NOTEBOOKS / (path.stem + ".ipynb")
    nbformat.write(nb, target)
    return target


def main(argv: list[str]) -> None:
    """Build the named sources, or all of them."""
    sources = [Path(a) for a in argv] or sorted(HERE.glob("[0-9][0-9]-*.py"))
    for source in sources:
        print(build(source).relative_to(HERE.parent.parent))


if __name__ == "__main__":
    main(sys.argv[1:])
