"""Plots of the fleet model (notebook 10): a figure per fleet size or write rate, log-log.

Like ``plots``, every function takes plain numbers (a *series* ``{label: [(x, y), ...]}``)
and returns its Axes; nothing here runs the model.
"""

from __future__ import annotations

from matplotlib.axes import Axes

from cachelab.lab.viz.plots import Series, _axes, _lines


def scaling_lines(
    series: Series,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    limit: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One line per label on log-log axes; ``limit`` draws a dashed ceiling (e.g. a CPU)."""
    ax = _axes(ax)
    _lines(ax, series)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    if limit is not None:
        ax.axhline(limit, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate("one core", (0.01, limit), xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", color="tab:red", fontsize="small")
    return ax


def batch_bars(data: dict[str, tuple[float, float]], *, ax: Axes | None = None) -> Axes:
    """Per variant, messages per write (bars) and staleness p99 in seconds (bar labels)."""
    ax = _axes(ax)
    bars = ax.barh(list(data), [messages for messages, _ in data.values()], color="tab:blue")
    ax.bar_label(bars, labels=[f"p99 {stale:.3g} s" for _, stale in data.values()], padding=3)
    ax.set(xscale="log", xlabel="messages per write (staleness p99 on each bar)")
    ax.invert_yaxis()
    return ax
