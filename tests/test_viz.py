"""Plots and animation frames: what they draw, checked on small hand-made data."""

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
from cachelab.viz import (
    Event,
    animate,
    build_frames,
    consistency_within,
    hit_rate_against,
    hit_rate_over_time,
    hit_rate_series,
    load_series,
    messages_per_write,
    nines_chart,
    render_png,
    staleness_against_network,
    staleness_histogram,
    store_load,
    variant_bars,
)
from cachelab.viz.frames import frame_times, normalise


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
    assert "nines" in nines.get_ylabel()
    with pytest.raises(ValueError, match="metric"):
        staleness_against_network(series, metric="speed")


def test_staleness_histogram_counts_every_stale_read() -> None:
    ax = staleness_histogram({"broken": [0.001, 0.002, 0.5], "fixed": []})
    heights = sum(patch.get_height() for patch in bars(ax))
    assert heights == 3
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
    assert len(ax.get_lines()) == 2
    assert [t.get_text() for t in ax.texts] == ["peak 510/s", "peak 20/s"]


def test_consistency_within_shows_the_anchors() -> None:
    ax = consistency_within({"invalidate": [(0.001, 0.9), (0.01, 0.999), (1.0, 1.0)]})
    labels = [line.get_label() for line in ax.get_lines()]
    assert "Facebook memcache: 4 nines within 1 s" in labels and "Meta TAO: 10 nines" in labels
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


TRACE = [
    Event(0.000, "fill", "b", "k", 1),
    Event(0.002, "write", "a", "k", 2, since=0.000),
    Event(0.006, "deliver", "b", "k", 2, since=0.002),
    Event(0.006, "applied", "b", "k", 2),
    Event(0.010, "drop", "c", "k", 2, since=0.002),
    Event(0.011, "stale_read", "c", "k", 1),
    Event(0.012, "partition", "c"),
]


def test_frames_follow_messages_in_flight() -> None:
    frames = build_frames(TRACE, nodes=["a", "b", "c"], linger=0.005)
    assert frames[0].caches == {"a": {}, "b": {"k": 1}, "c": {}}
    moving = [f for f in frames if any(d.dst == "b" for d in f.dots)]
    progress = [d.progress for f in moving for d in f.dots if d.dst == "b"]
    assert progress == sorted(progress) and 0 <= progress[0] < progress[-1] < 1
    after = next(f for f in frames if f.t == 0.006)
    assert after.caches["b"] == {} and after.store == {"k": 2}
    assert next(f for f in frames if f.t == 0.010).drops[0].dst == "c"
    last = frames[-1]
    assert last.stale == (("c", "k"),) and last.down == frozenset({"c"})
    assert "c: partition" in last.caption


def test_update_strategy_frames_keep_the_new_version() -> None:
    frames = build_frames(TRACE, carries_value=True)
    assert frames[-1].caches["b"] == {"k": 2}
    assert frames[0].nodes == ("a", "b", "c")


def test_frame_times_are_thinned_to_the_limit() -> None:
    events = normalise([Event(i / 1000, "fill", "a", "k", i) for i in range(500)])
    times = frame_times(events, max_frames=50)
    assert len(times) == 50 and times[0] == 0.0 and times[-1] == 0.499
    assert build_frames([])[0].caches == {}


def test_render_png_and_animation_draw_every_frame() -> None:
    frames = build_frames(TRACE)
    assert render_png(frames[-1]).startswith(b"\x89PNG")
    anim = animate(frames, interval=100)
    html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == len(frames)
    assert plt.get_fignums() == []  # the animation owns its figure; none is left to show twice
