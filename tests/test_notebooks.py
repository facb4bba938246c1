"""The lab's notebooks: committed clean, and each runs top to bottom offline."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from cachelab.harness.servers import ServerProcess
from cachelab.lab import NOTEBOOKS as NOTEBOOK_DIR

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 120


def run(path: Path, **env: str) -> Any:
    """Execute a notebook in a fresh kernel (inline matplotlib backend), in memory."""
    notebook = nbformat.read(path, as_version=4)
    saved = {name: os.environ.pop(name, None) for name in ("MPLBACKEND", "REDIS_URL")}
    os.environ.update(env)
    try:
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    finally:
        for name in env:
            os.environ.pop(name, None)
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    return notebook


def test_there_are_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS][:1] == ["00-quickstart.ipynb"]
    assert len(NOTEBOOKS) == 11


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    tagged = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "one papermill-style cell tagged 'parameters'"


def markdown(path: Path) -> str:
    """The notebook's markdown cells, joined."""
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_questions_and_hidden_answers(path: Path) -> None:
    text = markdown(path)
    tail = text[len(text) // 2 :]
    assert "<details><summary>" in tail and "</details>" in tail
    links = re.findall(r"\]\((\d\d-[\w-]+\.ipynb)\)", tail)
    assert links and all((path.parent / link).exists() for link in links)
    assert "four 9s" not in text and "4 nines" not in text  # unsourced; see DESIGN.md


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_offline_on_the_embedded_server(path: Path) -> None:
    notebook = run(path)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []


REDIS_NOTEBOOKS = [p for p in NOTEBOOKS if "REDIS_URL" in p.read_text()]


@pytest.mark.notebook
@pytest.mark.real_redis
@pytest.mark.parametrize("path", REDIS_NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_switches_to_a_real_server_with_redis_url(
    path: Path, request: pytest.FixtureRequest
) -> None:
    real: ServerProcess = request.getfixturevalue("redis_server")
    with real.client() as server:
        before = int(server.info("stats")["total_commands_processed"])
        notebook = run(path, REDIS_URL=real.url)
        outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
        assert [o for o in outputs if o.output_type == "error"] == []
        assert int(server.info("stats")["total_commands_processed"]) - before > 10
