"""``cachelab demo``: a few steps on the embedded fakeredis, printed as plain tables."""

from __future__ import annotations

import io

import pytest

from cachelab.harness import cli
from cachelab.harness.demo import COLUMNS, Screen, table


def test_a_short_demo_prints_a_table_per_step_and_repairs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["demo", "--seconds", "0.6", "--steps", "4", "--nodes", "3"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out  # not a terminal: no escape codes
    assert out.startswith("cachelab demo: 3 invalidate nodes on the embedded fakeredis")
    for number in range(1, 5):
        assert f"step {number}/4" in out
    assert out.count(COLUMNS[0] + "  " + COLUMNS[1]) == 5  # four steps and the last word
    assert "step 2/4" in out.split("KILLED every pub/sub connection")[0]
    last = out.split("after settle: ")[1]
    assert last.startswith("settled; every node reads the same hot: yes")
    rows = last.splitlines()[2:5]
    assert [r.split()[0] for r in rows] == ["a", "b", "c"]
    assert all(r.split()[1] == "yes" and int(r.split()[5]) >= 1 for r in rows)  # reconnected


def test_a_live_screen_redraws_in_place() -> None:
    out = io.StringIO()
    screen = Screen(out, live=True)
    screen.show(["one", "two"])
    screen.show(["three", "four", "five"])
    assert out.getvalue() == "one\ntwo\n\x1b[2F\x1b[Jthree\nfour\nfive\n"


def test_a_table_aligns_its_columns() -> None:
    lines = table([["a", "yes", "1", "2", "3", "0", "0", "s1 @ 1"]])
    assert len(lines) == 2
    assert lines[0].index("coherent") == lines[1].index("yes")
