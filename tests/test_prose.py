"""The lab's sentences against the runs and the code they describe.

A notebook sentence that states what a run does is either formatted from that run, or
checked here by running the scenario and asserting what the sentence claims. Each test
names the notebook whose words it keeps true.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from cachelab.lab import NOTEBOOKS
from cachelab.lab.facts import (
    heartbeat_detection,
    heartbeat_interval,
    hit_rate_between,
    hottest_gap,
    mean_key_gap,
    request_gaps,
    supported_nines,
)
from cachelab.sim import Simulation
from cachelab.sim.result import SimResult
from cachelab.sim.scenarios import CATALOGUE
from cachelab.sim.trace import TraceEvent
from cachelab.sim.workloads import Request, every, merge

SOURCES = Path(__file__).resolve().parent.parent / "notebooks" / "src"


def markdown(stem: str) -> str:
    """A built notebook's markdown cells, joined."""
    path = next(NOTEBOOKS.glob(f"{stem}-*.ipynb"))
    notebook = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


def ys(line: Any) -> list[float]:
    """A matplotlib line's y data as floats."""
    return [float(y) for y in line.get_ydata()]


def reads_of(result: SimResult, node: str) -> list[TraceEvent]:
    """``node``'s reads in the trace, stale or not, in time order."""
    return [e for e in result.trace if e.node == node and e.kind in ("read", "stale_read")]


def own_message(result: SimResult, node: str, version: int) -> TraceEvent:
    """The delivery of ``node``'s own write of ``version`` back to it."""
    return next(e for e in result.trace
                if e.kind == "deliver" and e.node == node and e.version == version)


# -- 04: the scenarios' explanations ---------------------------------------------------


def test_04_stale_set_happens_as_the_slow_motion_paragraph_tells() -> None:
    scenario = CATALOGUE["stale_set"]
    broken, fixed = scenario.broken.run(), scenario.fixed.run()
    write = next(e for e in broken.trace if e.kind == "write" and e.version == 2)
    told = own_message(broken, "b", 2)
    reply = next(e for e in broken.trace if e.node == "b" and e.kind == "fill")
    assert write.t == pytest.approx(0.11) and told.t == pytest.approx(0.111)
    assert told.detail == "set:applied"
    assert reply.since == pytest.approx(0.1) and reply.t == pytest.approx(0.15)
    assert reply.version == 1
    later = [e for e in reads_of(broken, "b") if e.since > reply.since]
    assert later and all(e.kind == "stale_read" for e in later)  # "every later read"
    assert any(e.kind == "fill_rejected" and e.node == "b" for e in fixed.trace)
    assert fixed.report.stale_reads == 0


@pytest.mark.parametrize(
    ("scenario", "own", "served"), [("two_writers", 3, 2), ("tombstones", 2, 1)]
)
def test_04_b_ignores_its_own_message_and_stays_stale_to_the_end(
    scenario: str, own: int, served: int
) -> None:
    """two_writers, and tombstones off: b's own message changes nothing (``set:own``)."""
    broken = CATALOGUE[scenario].broken.run()
    assert own_message(broken, "b", own).detail == "set:own"
    last = reads_of(broken, "b")[-1]
    assert (last.kind, last.version) == ("stale_read", served)
    assert "until the end of the run" in CATALOGUE[scenario].explanation


@pytest.mark.parametrize("variant", ["reconnect_flush", "gap_detection"])
def test_04_lost_message_the_node_repairs_rather_than_flushes(variant: str) -> None:
    result = CATALOGUE["lost_message"].variant(variant).run()
    kinds = {e.kind for e in result.trace if e.node == "b"}
    assert "flush" not in kinds
    assert result.metrics(0.05)["repair_checks"] >= 1
    assert "repairs" in CATALOGUE["lost_message"].variant("reconnect_flush").label


def test_04_the_evicted_caption_credits_tombstones_only_where_they_are_on() -> None:
    pytest.importorskip("anywidget")
    from cachelab.lab.viz import side_by_side

    viewer = side_by_side(CATALOGUE["tombstones"])
    words = {}
    for pane in viewer.panes:
        row = next(r for r in pane["events"] if r["kind"] == "evict")
        words[pane["title"].split(":")[0]] = (row["why"], pane["kinds"]["evict"]["safeguard"])
    assert "off in this run" in words["BROKEN"][0] and "remembers" not in words["BROKEN"][0]
    assert words["BROKEN"][1] == "tombstones (off in this run)"
    assert "a tombstone remembers" in words["FIXED"][0] and words["FIXED"][1] == "tombstones"


def test_04_names_hazelcasts_sequence_numbers_not_a_versionless_jvm() -> None:
    text = markdown("04")
    assert "None of the JVM near caches" not in text and "Hazelcast" in text


# -- 05 ---------------------------------------------------------------------------------


def test_05_the_heartbeat_notices_a_deaf_subscription_within_four_intervals() -> None:
    interval = heartbeat_interval()
    assert interval == 1.0
    assert heartbeat_detection(interval) == pytest.approx(4 * interval, abs=0.01)
    assert heartbeat_detection(0.1) == pytest.approx(0.4, abs=0.01)
    assert "three seconds" not in markdown("05")


def test_05_the_stream_strategy_it_names_exists() -> None:
    script = merge([Request(0.0, 0, "write", "k")], every(0.05, 0.01, 0.3, 1, "read", "k"))
    result = Simulation(nodes=2, strategy="stream", progress=False).run(workload=script)
    assert result.report.reads > 0 and result.report.stale_reads == 0
    assert "planned" not in markdown("05")


def test_hit_rate_between_counts_only_reads_in_the_window() -> None:
    from cachelab.history import Op

    history = [Op("a", "read", "k", 0.1, 0.1, 1, True), Op("a", "read", "k", 0.2, 0.2, 1, False),
               Op("a", "write", "k", 0.15, 0.15, 2, False), Op("a", "read", "k", 0.5, 0.5, 2, True)]
    assert hit_rate_between(history, 0.0, 0.3) == 0.5
    assert hit_rate_between(history, 0.3, 0.4) == 0.0


# -- 03 ---------------------------------------------------------------------------------


def test_03_key_gaps_are_per_node() -> None:
    workload = [Request(t / 10, node, "read", "k") for t in range(10) for node in (0, 1)]
    assert request_gaps(workload) == pytest.approx([0.1] * 18)
    assert hottest_gap(workload) == pytest.approx(0.1)
    assert mean_key_gap(workload, keys=1) == pytest.approx(0.9 * 2 / 20)
    assert "every 100 ms on average" not in markdown("03")


# -- 07 ---------------------------------------------------------------------------------


def test_07_no_failure_in_n_trials_supports_log10_n_over_3_nines() -> None:
    assert supported_nines(989) == pytest.approx(math.log10(989 / 3))
    assert 2.5 < supported_nines(989) < 2.6
    assert supported_nines(2) == 0.0 and supported_nines(0) == 0.0
    text = markdown("07")
    assert "log10(reads)`" not in text and "ten nines and more" not in text


def test_07_the_polaris_chart_stops_at_the_supported_nines() -> None:
    pytest.importorskip("matplotlib")
    from cachelab.lab.viz import consistency_within

    ceiling = supported_nines(989)
    ax = consistency_within({"ours": [(0.001, 0.99), (0.01, 1.0)],
                             "lossy": [(0.001, 0.999), (0.01, 0.999)]}, ceiling=ceiling)
    lines = ax.get_lines()
    assert ys(lines[0]) == pytest.approx([2.0, ceiling])
    assert lines[1].get_marker() == "^" and ys(lines[1]) == pytest.approx([ceiling])
    lossy = next(line for line in lines if line.get_label() == "lossy")
    assert max(ys(lossy)) <= ceiling + 1e-9
    # a failure was sampled on the lossy line: no triangle claims every write reflected
    assert sum(1 for line in lines if line.get_marker() == "^") == 1
    source = (SOURCES / "07-measuring-consistency.py").read_text()
    assert "ceiling=ceiling" in source and "supported_nines(sampled)" in source


# -- 09 ---------------------------------------------------------------------------------


def test_09_counts_the_answers_it_lists() -> None:
    intro = markdown("09").split("\n\n## ")[0]
    words = {"two": 2, "three": 3, "four": 4, "five": 5}
    said = re.search(r"puts (\w+) answers side by side", intro)
    assert said is not None
    items = re.findall(r"^\d+\. ", intro, re.M)
    assert words[said.group(1)] == len(items)


# -- the sentences of issue 19 that were wrong, so they never come back ------------------

RETIRED = {
    "01": ["later writes look old, ignored"],
    "03": ["every 100 ms on average (10 per second)"],
    "05": ["More writes, shorter gaps, less staleness", "the hit rate barely moves",
           "within three seconds", "strategy is planned"],
    "06": ["= 400 reads"],
    "07": ["ten nines and more at", "by about `log10(reads)`"],
    "09": ["puts three answers"],
}


@pytest.mark.parametrize("stem", sorted(RETIRED))
def test_the_sentences_that_contradicted_their_numbers_stay_gone(stem: str) -> None:
    text = markdown(stem)
    assert [s for s in RETIRED[stem] if s in text] == []


def test_the_scenario_explanations_no_longer_promise_a_quick_end_or_a_flush() -> None:
    text = " ".join(s.explanation for s in CATALOGUE.values())
    assert "only until its own message lands" not in text
    assert "until its own message comes back" not in text
    assert "the node flushes" not in text
