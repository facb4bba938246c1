"""Plots and the viewer's timeline: what they draw, checked on small hand-made data."""

from __future__ import annotations

import math
from collections.abc import Iterator

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from cachelab.history import Op
from cachelab.lab.viz import (
    KINDS,
    Event,
    burst_counts,
    bursts,
    consistency_within,
    hit_rate_against,
    hit_rate_over_time,
    hit_rate_series,
    load_series,
    messages_per_write,
    nines_chart,
    pane,
    staleness_against_network,
    staleness_histogram,
    store_load,
    variant_bars,
)
from cachelab.lab.viz.scaling import batch_bars, scaling_lines
from cachelab.lab.viz.timeline import explain, stops
from cachelab.sim import KINDS as SIM_KINDS


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    """Each test starts and ends with no pyplot figure open."""
    yield
    plt.close("all")


def xs(line: Line2D) -> list[float]:
    """A line's x data as floats."""
    return [float(x) for x in np.asarray(line.get_xdata())]


def ys(line: Line2D) -> list[float]:
    """A line's y data as floats."""
    return [float(y) for y in np.asarray(line.get_ydata())]


def bars(ax: Axes) -> list[Rectangle]:
    """The bars (rectangles) drawn on ``ax``."""
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def read(t: float, hit: bool) -> Op:
    """A read at ``t``."""
    return Op("a", "read", "k", t, t + 0.001, 1, hit)


def test_hit_rate_series_bins_reads_only() -> None:
    history = [
        read(0.0, False),
        read(0.1, True),
        Op("a", "write", "k", 0.5, 0.6, 2),
        read(0.9, True),
        read(1.0, True),
    ]
    assert hit_rate_series(history, bins=2) == [(0.25, 0.5), (0.75, 1.0)]
    assert hit_rate_series([], bins=3) == []


def test_hit_rate_over_time_draws_one_line_per_history() -> None:
    ax = hit_rate_over_time(
        {"warm": [read(i, True) for i in range(10)], "cold": [read(i, i > 4) for i in range(10)]},
        bins=5,
    )
    assert [line.get_label() for line in ax.get_lines()] == ["warm", "cold"]
    assert ys(ax.get_lines()[1]) == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_hit_rate_against_sorts_points_and_labels_the_parameter() -> None:
    ax = hit_rate_against({"zipf 1.0": [(1000, 0.9), (10, 0.3), (100, 0.7)]}, "cache size")
    line = ax.get_lines()[0]
    assert xs(line) == [10, 100, 1000]
    assert ax.get_xlabel() == "local cache size (entries)" and ax.get_xscale() == "log"
    assert hit_rate_against({"s": [(0.5, 0.1)]}, "skew").get_xscale() == "linear"
    with pytest.raises(ValueError, match="unknown parameter"):
        hit_rate_against({}, "colour")


def test_staleness_against_network_per_strategy() -> None:
    series = {"none": [(0, 0.1), (10, 0.3)], "invalidate": [(0, 0.0), (10, 0.001)]}
    ax = staleness_against_network(series, x="delay")
    assert len(ax.get_lines()) == 2 and ax.get_yscale() == "symlog"
    nines = staleness_against_network({"x": [(0.1, 3.0)]}, x="loss", metric="nines")
    assert "nines" in nines.get_ylabel() and nines.get_xscale() == "symlog"
    with pytest.raises(ValueError, match="metric"):
        staleness_against_network(series, metric="speed")


def test_staleness_histogram_counts_every_stale_read() -> None:
    ax = staleness_histogram({"broken": [0.001, 0.002, 0.5], "fixed": [0.002]})
    legend = ax.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == [
        "broken (3 stale reads)",
        "fixed (1 stale reads)",
    ]
    assert all(not p.get_fill() for p in ax.patches)  # outlines: no series hides another
    empty = staleness_histogram({"fixed": []})
    assert [t.get_text() for t in empty.texts] == ["no stale read"]


def test_messages_per_write_labels_each_bar() -> None:
    ax = messages_per_write({"none": 0.0, "invalidate": 3.0, "update": 3.0})
    assert [p.get_height() for p in bars(ax)] == [0.0, 3.0, 3.0]
    assert [t.get_text() for t in ax.texts] == ["0.0", "3.0", "3.0"]


def test_store_load_annotates_the_peak() -> None:
    assert load_series([0.0, 0.0, 0.25], 0.1) == [(0.0, 20.0), (0.1, 0.0), (0.2, 10.0)]
    herd = [1.0] * 50 + [1.05]
    ax = store_load({"herd": herd, "single flight": [1.0, 1.05]}, bin_width=0.1)
    legend = ax.get_legend()
    assert legend is not None and len(ax.texts) == 0
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["herd (peak 510/s)", "single flight (peak 20/s)"]
    assert [ys(line) for line in ax.get_lines()[1::2]] == [[510.0], [20.0]]  # the peak dots


def test_consistency_within_shows_the_anchors() -> None:
    ax = consistency_within({"invalidate": [(0.001, 0.9), (0.01, 0.999), (1.0, 1.0)]})
    labels = [str(line.get_label()) for line in ax.get_lines()]
    assert labels[-1] == 'Meta TAO: 10 nines (Meta, "Cache made consistent" (2022))'
    assert not any("memcache" in label for label in labels)
    ours = ax.get_lines()[0]
    assert [round(y, 6) for y in ys(ours)] == [1.0, 3.0, 6.0]  # share 1.0: the ceiling
    assert ys(ax.get_lines()[1]) == [6.0] and ax.get_lines()[1].get_marker() == "^"


def test_nines_chart_caps_infinite_bars() -> None:
    ax = nines_chart({"broken": 2.0, "fixed": math.inf})
    assert [p.get_width() for p in bars(ax)] == [2.0, 12.0]
    assert [t.get_text() for t in ax.texts] == ["2.0", "no stale read"]


def test_variant_bars_colour_broken_and_fixed() -> None:
    ax = variant_bars(
        {"no_guard": 16.0, "fill_guard": 0.0}, broken=["no_guard"], metric="stale_reads"
    )
    assert [b.get_facecolor() for b in bars(ax)] == [
        matplotlib.colors.to_rgba("tab:red"),
        matplotlib.colors.to_rgba("tab:green"),
    ]
    assert [t.get_text() for t in ax.texts] == ["16", "0"] and ax.get_ylabel() == "stale reads"
    worst = variant_bars({"no_ttl": 0.8503, "ttl": 2.2e-16}, metric="staleness_max", title="x" * 60)
    assert [t.get_text() for t in worst.texts] == ["850 ms", "0 ms"]
    assert worst.get_ylabel() == "worst staleness (ms)" and "\n" in str(worst.get_title())


TRACE = [
    Event(0.000, "fill", "b", "k", 1),
    Event(0.000, "fill", "c", "k", 1),
    Event(0.002, "write", "a", "k", 2, "set", since=0.000),
    Event(0.002, "send", "a", "k", 2, "set"),
    Event(0.006, "deliver", "b", "k", 2, "set:applied", since=0.002),
    Event(0.010, "drop", "c", "k", 2, "partition", since=0.002),
    Event(0.011, "stale_read", "c", "k", 1, "hit", since=0.011),
    Event(0.012, "partition", "c", detail="start"),
    Event(0.013, "quarantine", "c", "k", 2, "a kind from the future"),
]


def effects(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """Each event's kind with what it changed."""
    keys = ("cache", "clear", "store", "down")
    return [(r["kind"], r["node"], *(r.get(k) for k in keys)) for r in rows]


def test_timeline_records_what_each_event_changed() -> None:
    rows = pane(TRACE, nodes=["a", "b", "c"])["events"]
    assert effects(rows) == [
        ("fill", "b", [["k", 1]], None, None, None),
        ("fill", "c", [["k", 1]], None, None, None),
        ("write", "a", None, None, 2, None),
        ("send", "a", None, None, None, None),
        ("deliver", "b", None, True, None, None),
        ("drop", "c", None, None, None, None),
        ("stale_read", "c", None, None, None, None),
        ("partition", "c", None, None, None, True),
        ("quarantine", "c", None, None, None, None),
    ]
    assert rows[4]["since"] == 0.002 and "since" not in rows[0]


def test_update_strategy_keeps_the_new_version() -> None:
    trace = [Event(0.0, "fill", "b", "k", 1), Event(0.1, "deliver", "b", "k", 2, "set:applied")]
    rows = pane(trace, carries_value=True)["events"]
    assert rows[1]["cache"] == [["k", 2]]


def test_every_kind_is_explained_and_an_unknown_one_is_drawn_generically() -> None:
    assert set(SIM_KINDS) <= set(KINDS)
    kinds = pane(TRACE)["kinds"]
    assert kinds["quarantine"] == {"label": "quarantine", "color": "#7f7f7f", "role": "mark",
                                   "safeguard": ""}
    future = Event(0, "quarantine", "c", detail="a kind from the future")
    assert "'quarantine' event (a kind from the future)" in explain(future)
    assert "fill_guard" in KINDS["fill_rejected"].safeguard
    own = explain(Event(0.0, "deliver", "a", "k", 3, "set:own"))
    assert "its own write coming back" in own
    assert "cut silently" in explain(Event(0.0, "drop", "b", "k", 3, "partition"))


def test_stops_skip_quiet_events_and_long_traces_are_cut() -> None:
    one = pane(TRACE)
    assert stops([one]) == [0.0, 0.002, 0.006, 0.010, 0.011, 0.012, 0.013]
    long = pane([Event(i / 1000, "fill", "a", "k", i) for i in range(50)], limit=10)
    assert len(long["events"]) == 10 and "first 10 events" in long["verdict"]


def test_bursts_count_each_window_after_a_write() -> None:
    loads = {"herd": [0.1, 0.101, 0.105, 0.3, 0.31], "lease": [0.1, 0.3]}
    assert burst_counts(loads["herd"], [0.1, 0.3], 0.02) == [3, 2]
    ax = bursts(loads, [0.1, 0.3], 0.02)
    assert [p.get_height() for p in bars(ax)] == [3, 2, 1, 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t = 0.1 s", "t = 0.3 s"]
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "database reads in 20 ms"


def test_scaling_lines_are_log_log_with_a_ceiling() -> None:
    ax = scaling_lines({"broadcast": [(1000, 1.2), (10, 0.01)], "tracking": [(10, 0.001)]},
                       xlabel="nodes", ylabel="CPU", limit=1.0)
    assert xs(ax.get_lines()[0]) == [10, 1000]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    ceiling = np.asarray(ax.get_lines()[-1].get_ydata())
    assert float(ceiling[0]) == 1.0 and ax.texts[0].get_text() == "one core"


def test_batch_bars_label_each_variant_with_its_staleness() -> None:
    ax = batch_bars({"none": (1000.0, 0.002), "100 or 10 s": (10.0, 9.5)})
    assert [p.get_width() for p in bars(ax)] == [1000.0, 10.0]
    assert [t.get_text() for t in ax.texts] == ["p99 0.002 s", "p99 9.5 s"]
