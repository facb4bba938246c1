"""Plots over plain data: every function takes numbers (or a history) and returns its Axes.

A *series* is ``{label: [(x, y), ...]}``: one line per label, e.g. one per strategy.
Nothing here runs a simulation; the notebooks do that and hand the numbers over,
so each plot can be tested on a handful of points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from cachelab.check import FACEBOOK_MEMCACHE_NINES as MEMCACHE_NINES
from cachelab.check import TAO_NINES

Series = Mapping[str, Sequence[tuple[float, float]]]

MEMCACHE_WITHIN = 1.0
"""The window of Facebook memcache's four nines, in seconds."""

_PARAMETERS = {
    "cache size": ("local cache size (entries)", True),
    "ttl": ("TTL (s)", True),
    "skew": ("Zipf skew s", False),
    "delay": ("network delay (ms)", True),
    "loss": ("message loss", False),
}


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
    xlabel, log = _parameter(parameter)
    ax = _axes(ax)
    _lines(ax, series)
    ax.set(xlabel=xlabel, ylabel="hit rate", ylim=(0, 1.02), title=f"Hit rate against {parameter}")
    if log:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    return ax


def _parameter(name: str) -> tuple[str, bool]:
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
    xlabel, log = _parameter(x)
    ax = _axes(ax)
    _lines(ax, series)
    ax.set(xlabel=xlabel, title=f"Consistency against network {x}")
    if log:
        ax.set_xscale("symlog", linthresh=0.1)
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
    """How stale the stale reads were (seconds, shown in ms on a log axis), per label."""
    ax = _axes(ax)
    values = [s * 1000 for v in staleness.values() for s in v if s > 0]
    if values:
        low, high = min(values), max(values)
        high = high * 1.01 if high > low else low * 10
        edges = [low * (high / low) ** (i / bins) for i in range(bins + 1)]
        for label, v in staleness.items():
            ms = [s * 1000 for s in v if s > 0]
            ax.hist(ms, bins=edges, alpha=0.6, label=f"{label} ({len(ms)})")
        ax.set_xscale("log")
        ax.legend(fontsize="small")
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
    """``what`` per second over time, one step line per label, each peak annotated."""
    ax = _axes(ax)
    for label, times in accesses.items():
        points = load_series(times, bin_width)
        if not points:
            continue
        end = (points[-1][0] + bin_width, points[-1][1])  # so the last bin has a width too
        xs, ys = zip(*points, end, strict=True)
        (line,) = ax.step(xs, ys, where="post", label=label)
        peak = max(points, key=lambda p: p[1])
        ax.annotate(
            f"peak {peak[1]:,.0f}/s",
            peak,
            textcoords="offset points",
            xytext=(4, 4),
            color=line.get_color(),
            fontsize="small",
        )
    ax.set(xlabel="time (s)", ylabel=f"{what} per second", title="Load on the store")
    if len(accesses) > 1:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def consistency_within(series: Series, *, ceiling: float = 6.0, ax: Axes | None = None) -> Axes:
    """Polaris-style: nines of writes every node reflects within M seconds, against M.

    Where every sampled write was reflected (infinite nines), the line stops at
    ``ceiling`` with a triangle: the sample cannot tell more.
    """
    ax = _axes(ax)
    for label, points in series.items():
        ordered = sorted(points)
        ys = [min(_nines(1.0 - share), ceiling) for _, share in ordered]
        (line,) = ax.plot([m for m, _ in ordered], ys, marker="o", markersize=3, label=label)
        full = [(m, y) for (m, _), y in zip(ordered, ys, strict=True) if y >= ceiling]
        if full:
            ax.plot(*zip(*full[:1], strict=True), marker="^", markersize=10, color=line.get_color())
    ax.plot(
        [MEMCACHE_WITHIN],
        [MEMCACHE_NINES],
        marker="*",
        markersize=14,
        color="tab:red",
        linestyle="",
        label="Facebook memcache: 4 nines within 1 s",
    )
    ax.axhline(TAO_NINES, color="tab:purple", linestyle="--", label="Meta TAO: 10 nines")
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
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    return ax


def nines_chart(data: Mapping[str, float], *, ax: Axes | None = None) -> Axes:
    """Nines of consistent reads per configuration, against the published anchors."""
    ax = _axes(ax)
    shown = [min(v, 12.0) for v in data.values()]  # an infinite bar would not draw
    bars = ax.barh(list(data), shown, color="tab:blue")
    ax.bar_label(bars, labels=[_nines_label(v) for v in data.values()], padding=3)
    ax.axvline(TAO_NINES, color="tab:purple", linestyle="--", label="Meta TAO: 10 nines")
    ax.axvline(MEMCACHE_NINES, color="tab:red", linestyle=":", label="memcache: 4 nines in 1 s")
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
    """One bar per variant of a scenario: broken ones red, fixed ones green, each labelled."""
    ax = _axes(ax, size=(4.0, 2.6))
    bad = set(broken)
    colors = ["tab:red" if name in bad else "tab:green" for name in values]
    bars = ax.bar(list(values), list(values.values()), color=colors)
    labels = [f"{v:.3g}" if abs(v) > 1e-9 else "0" for v in values.values()]  # float dust
    ax.bar_label(bars, labels=labels, fontsize="small")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title, fontsize="medium")
    ax.tick_params(axis="x", labelrotation=20, labelsize="small")
    ax.margins(y=0.2)
    return ax
