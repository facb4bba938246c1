"""The README is the package index page: its example runs, and none of its links can break.

Only the standard library and pytest here: the lowest-versions run (tests/test_lowest.py)
runs this file too, against its installed copy of cachelab.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
# A markdown link or image's target, and the targets of HTML links and images.
LINK = re.compile(r"\]\(\s*<?([^)\s>]*)|(?:href|src)\s*=\s*[\"']([^\"']*)")


def readme_example(readme: Path = README) -> str:
    """The code of the README's "The API in ten lines" section."""
    section = readme.read_text().split("## The API in ten lines", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def run_example(python: str, cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """Run the README example with ``python``; b's hit rate and invalidations it printed."""
    done = subprocess.run(
        [python, "-c", readme_example()],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hit_rate, invalidations = done.stdout.split()
    return float(hit_rate), int(invalidations)


def test_the_api_example_is_ten_lines() -> None:
    lines = [line for line in readme_example().splitlines() if line.strip()]
    assert len(lines) == 10, lines


def test_the_api_example_runs_on_the_embedded_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    hit_rate, invalidations = run_example(sys.executable, tmp_path, env)
    assert hit_rate == 1 / 3  # a miss, a hit, and get_or_load's miss
    # a's set and invalidate reach b through pub/sub, which may still be on its way
    assert 0 <= invalidations <= 2


def test_the_readme_has_no_link_that_breaks_off_the_repository() -> None:
    # Relative links break on a package index page, and so do in-page anchors: the index
    # gives its headings no ids (readme_renderer#169), so files are named in plain text.
    targets = [a or b for a, b in LINK.findall(README.read_text())]
    relative = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]
    assert relative == []


def test_the_readme_opens_with_an_install_from_a_package_index() -> None:
    text = README.read_text()
    first = text.split("```", 2)[1].strip().splitlines()
    assert first == ["pip install cachelab", "pip install 'cachelab[lab]'", "cachelab lab"]
    assert text.index("cachelab lab --reset") < text.index("make lab")
