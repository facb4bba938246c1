"""Plots over plain data: every function takes numbers (or a history) and returns its Axes.

A *series* is ``{label: [(x, y), ...]}``: one line per label, e.g. one per strategy.
Nothing here runs a simulation; the notebooks do that and hand the numbers over,
so each plot can be tested on a handful of points.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from cachelab.check import TAO_NINES, TAO_SOURCE
from cachelab.sim.scenarios import METRICS, Metric

Series = Mapping[str, Sequence[tuple[float, float]]]

TAO_LABEL = f"Meta TAO: {TAO_NINES:g} nines ({TAO_SOURCE})"
_PARAMETERS: dict[str, tuple[str, float | None]] = {
    "cache size": ("local cache size (entries)", 0.0),
    "ttl": ("TTL (s)", 0.0),
    "skew": ("Zipf skew s", None),
    "delay": ("network delay (ms)", 0.1),
    "loss": ("message loss (share of deliveries)", 1e-3),
}
"""Axis label and scale of each swept parameter: None linear, 0 log, else symlog's
linear threshold (so that a sweep starting at 0 still shows its first point)."""


def _axes(ax: Axes | None, size: tuple[float, float] = (6.0, 3.6)) -> Axes:
    """The given Axes, or a fresh figure's."""
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size, layout="constrained")
    return new


def _lines(ax: Axes, series: Series, marker: str = "o") -> None:
    """One line per label, points sorted by x."""
    for label, points in series.items():
        xs, ys = zip(*sorted(points), strict=True) if points else ((), ())
        ax.plot(xs, ys, marker=marker, label=label)
    if len(series) > 1:
        ax.legend(fontsize="small")


def _attr(op: Any, name: str, index: int) -> Any:
    """A field of an Op, or of a plain tuple laid out like one."""
    return getattr(op, name) if hasattr(op, name) else op[index]


def hit_rate_series(history: Iterable[Any], bins: int = 40) -> list[tuple[float, float]]:
    """``[(time, hit rate)]`` of the reads of a history, in ``bins`` equal time slices."""
    reads = [
        (float(_attr(op, "start", 3)), bool(_attr(op, "hit", 6)))
        for op in history
        if _attr(op, "op", 1) == "read"
    ]
    if not reads:
        return []
    t0 = min(t for t, _ in reads)
    span = (max(t for t, _ in reads) - t0) or 1.0
    hits, counts = [0] * bins, [0] * bins
    for t, hit in reads:
        i = min(int((t - t0) / span * bins), bins - 1)
        counts[i] += 1
        hits[i] += hit
    width = span / bins
    return [(t0 + (i + 0.5) * width, hits[i] / counts[i]) for i in range(bins) if counts[i]]


def hit_rate_over_time(
    histories: Mapping[str, Iterable[Any]], *, bins: int = 40, ax: Axes | None = None
) -> Axes:
    """Hit rate over time, one line per history (the warm-up curve, and dips after flushes)."""
    ax = _axes(ax)
    _lines(ax, {label: hit_rate_series(h, bins) for label, h in histories.items()}, marker="")
    ax.set(xlabel="time (s)", ylabel="hit rate", ylim=(0, 1.02), title="Hit rate over time")
    ax.grid(alpha=0.3)
    return ax


def hit_rate_against(series: Series, parameter: str, *, ax: Axes | None = None) -> Axes:
    """Hit rate against ``"cache size"``, ``"ttl"`` or ``"skew"``, one line per label."""
    xlabel, scale = _parameter(parameter)
    ax = _axes(ax)
    _lines(ax, series)
    ax.set(xlabel=xlabel, ylabel="hit rate", ylim=(0, 1.02), title=f"Hit rate against {parameter}")
    _x_scale(ax, scale)
    ax.grid(alpha=0.3)
    return ax


def _x_scale(ax: Axes, scale: float | None) -> None:
    """Linear, log, or symlog with a linear stretch around 0."""
    if scale == 0.0:
        ax.set_xscale("log")
    elif scale is not None:
        ax.set_xscale("symlog", linthresh=scale)


def _parameter(name: str) -> tuple[str, float | None]:
    """Axis label and log scale of a swept parameter."""
    try:
        return _PARAMETERS[name]
    except KeyError:
        raise ValueError(
            f"unknown parameter {name!r}; choose one of {sorted(_PARAMETERS)}"
        ) from None


def staleness_against_network(
    series: Series, *, x: str = "delay", metric: str = "stale_fraction", ax: Axes | None = None
) -> Axes:
    """Stale fraction (log scale) or nines against network ``delay`` or ``loss``, per strategy."""
    if metric not in ("stale_fraction", "nines"):
        raise ValueError(f"metric must be 'stale_fraction' or 'nines', not {metric!r}")
    xlabel, scale = _parameter(x)
    ax = _axes(ax)
    _lines(ax, series)
    ax.set(xlabel=xlabel, title=f"Consistency against network {x}")
    _x_scale(ax, scale)
    if metric == "stale_fraction":
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylabel("stale fraction of reads")
    else:
        ax.set_ylabel("nines (-log10 stale fraction)")
    ax.grid(alpha=0.3)
    return ax


def staleness_histogram(
    staleness: Mapping[str, Sequence[float]], *, bins: int = 30, ax: Axes | None = None
) -> Axes:
    """How stale the stale reads were (ms, log axis): one outlined histogram per label.

    Outlines, not filled bars, so no series hides another; a label with no stale read
    says so in the legend.
    """
    ax = _axes(ax, size=(7.5, 3.8))
    values = [s * 1000 for v in staleness.values() for s in v if s > 0]
    if values:
        low, high = min(values), max(values)
        high = high * 1.01 if high > low else low * 10
        edges = [low * (high / low) ** (i / bins) for i in range(bins + 1)]
        styles = ("-", "--", "-.", ":")
        for i, (label, v) in enumerate(staleness.items()):
            ms = [s * 1000 for s in v if s > 0]
            ax.hist(ms, bins=edges, histtype="step", linewidth=2, linestyle=styles[i % 4],
                    label=f"{label} ({len(ms) or 'no'} stale reads)")
        ax.set_xscale("log")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no stale read", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="staleness (ms)", ylabel="stale reads", title="How stale were the stale reads?")
    return ax


def messages_per_write(data: Mapping[str, float], *, ax: Axes | None = None) -> Axes:
    """Messages delivered per write, one bar per strategy, labelled with its value."""
    ax = _axes(ax)
    bars = ax.bar(list(data), list(data.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.1f")
    ax.set(ylabel="messages per write", title="What a write costs the network")
    return ax


def load_series(times: Sequence[float], bin_width: float) -> list[tuple[float, float]]:
    """``[(bin start, accesses per second)]`` of store accesses, gap-free from first to last."""
    if not times:
        return []
    t0 = min(times)
    counts: dict[int, int] = {}
    for t in times:
        i = int((t - t0) / bin_width)
        counts[i] = counts.get(i, 0) + 1
    return [(t0 + i * bin_width, counts.get(i, 0) / bin_width) for i in range(max(counts) + 1)]


def store_load(
    accesses: Mapping[str, Sequence[float]],
    *,
    bin_width: float = 0.01,
    what: str = "store reads",
    ax: Axes | None = None,
) -> Axes:
    """``what`` per second over time, one step line per label; each peak in its legend entry.

    The peak is marked with a dot on the line and its value goes in the legend, so no
    label can be clipped by the frame or sit on the legend.
    """
    ax = _axes(ax)
    for label, times in accesses.items():
        points = load_series(times, bin_width)
        if not points:
            continue
        end = (points[-1][0] + bin_width, points[-1][1])  # so the last bin has a width too
        xs, ys = zip(*points, end, strict=True)
        peak = max(points, key=lambda p: p[1])
        (line,) = ax.step(xs, ys, where="post", label=f"{label} (peak {peak[1]:,.0f}/s)")
        ax.plot(peak[0] + bin_width / 2, peak[1], "o", color=line.get_color(), markersize=5)
    ax.set(xlabel="time (s)", ylabel=f"{what} per second", title="Load on the store")
    ax.margins(y=0.15)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return ax


def consistency_within(series: Series, *, ceiling: float = 6.0, ax: Axes | None = None) -> Axes:
    """Polaris-style: nines of writes every node reflects within M seconds, against M.

    Where every sampled write was reflected (infinite nines), the line stops at
    ``ceiling`` with a triangle: the sample cannot tell more. Pass the nines the sample
    supports (``cachelab.lab.facts.supported_nines``), not a round number.
    """
    ax = _axes(ax, size=(8.0, 4.8))
    for label, points in series.items():
        ordered = sorted(points)
        ys = [min(_nines(1.0 - share), ceiling) for _, share in ordered]
        (line,) = ax.plot([m for m, _ in ordered], ys, marker="o", markersize=3, label=label)
        full = [(m, y) for (m, share), y in zip(ordered, ys, strict=True) if share >= 1.0]
        if full:
            ax.plot(*zip(*full[:1], strict=True), marker="^", markersize=10, color=line.get_color())
    ax.axhline(TAO_NINES, color="tab:purple", linestyle="--", label=TAO_LABEL)
    ax.set_xscale("log")
    ax.axhspan(ceiling, ceiling + 0.3, color="0.9", zorder=0)
    ax.text(
        0.01,
        ceiling + 0.05,
        "every sampled write reflected",
        fontsize="x-small",
        color="0.4",
        transform=ax.get_yaxis_transform(),
    )
    ax.set(xlabel="M (s)", ylabel="nines of writes consistent within M", ylim=(0, 10.5))
    ax.set_title("Writes consistent within M")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    ax.grid(alpha=0.3)
    return ax


def nines_chart(data: Mapping[str, float], *, ax: Axes | None = None) -> Axes:
    """Nines of consistent reads per configuration, against the published anchors."""
    ax = _axes(ax)
    shown = [min(v, 12.0) for v in data.values()]  # an infinite bar would not draw
    bars = ax.barh(list(data), shown, color="tab:blue")
    ax.bar_label(bars, labels=[_nines_label(v) for v in data.values()], padding=3)
    ax.axvline(TAO_NINES, color="tab:purple", linestyle="--", label=TAO_LABEL)
    ax.set(xlabel="nines of consistent reads", xlim=(0, 13), title="How many nines?")
    ax.invert_yaxis()
    ax.legend(fontsize="small", loc="lower right")
    return ax


def _nines(stale_share: float) -> float:
    """-log10 of a share of failures; infinite when there is none."""
    return -math.log10(stale_share) if stale_share > 0 else math.inf


def _nines_label(value: float) -> str:
    """``3.2`` or ``no stale read``."""
    return "no stale read" if math.isinf(value) else f"{value:.1f}"


def variant_bars(
    values: Mapping[str, float],
    *,
    broken: Iterable[str] = (),
    metric: str = "",
    title: str = "",
    ax: Axes | None = None,
) -> Axes:
    """One bar per variant of a scenario: broken ones red, fixed ones green, each labelled.

    A known ``metric`` is drawn in its unit (a worst staleness in ms); the title wraps.
    """
    ax = _axes(ax, size=(4.0, 2.8))
    unit = METRICS.get(metric, Metric(metric.replace("_", " ")))
    bad = set(broken)
    colors = ["tab:red" if name in bad else "tab:green" for name in values]
    bars = ax.bar(list(values), [v * unit.scale for v in values.values()], color=colors)
    ax.bar_label(bars, labels=[unit.format(v) for v in values.values()], fontsize="small")
    ax.set_ylabel(f"{unit.label} ({unit.unit})" if unit.unit else unit.label, fontsize="small")
    ax.set_title(textwrap.fill(title, 38), fontsize="medium")
    ax.tick_params(axis="x", labelrotation=20, labelsize="small")
    ax.margins(y=0.25)
    return ax


def burst_counts(times: Sequence[float], starts: Sequence[float], width: float) -> list[int]:
    """How many ``times`` fall in ``[start, start + width)`` for each start."""
    return [sum(1 for t in times if start <= t < start + width) for start in starts]


def bursts(
    accesses: Mapping[str, Sequence[float]],
    starts: Sequence[float],
    width: float,
    *,
    what: str = "database reads",
    ax: Axes | None = None,
) -> Axes:
    """Grouped bars: ``what`` in the ``width`` seconds after each start, one bar per label.

    For a herd, one group per write: a burst of a few ms stays readable on a run of
    seconds, where a line over time would shrink it to a hairline.
    """
    ax = _axes(ax, size=(8.0, 3.6))
    n = max(len(accesses), 1)
    for i, (label, times) in enumerate(accesses.items()):
        counts = burst_counts(times, starts, width)
        xs = [j + (i - (n - 1) / 2) * 0.8 / n for j in range(len(starts))]
        bars = ax.bar(xs, counts, width=0.8 / n, label=label)
        ax.bar_label(bars, fontsize="x-small")
    ax.set_xticks(range(len(starts)), [f"t = {t:g} s" for t in starts])
    ax.set_yscale("log")
    ax.margins(y=0.2)
    ax.set(ylabel=f"{what} in {width * 1000:g} ms", title=f"{what.capitalize()} after each write")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
