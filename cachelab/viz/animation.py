"""Draw frames: Redis on top, the nodes below as boxes of ``key vN``, messages as dots.

``animate`` gives a ``matplotlib.animation.FuncAnimation`` whose ``to_jshtml()``
plays in exported HTML; ``render_png`` gives one frame as PNG bytes for the widget
player. Both call ``draw_frame``, so they always show the same picture.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from cachelab.viz.frames import REDIS, Frame, build_frames

_ROWS = 6
"""Cached keys listed per node box; the rest are summarised as ``+n more``."""
_NODE_Y, _REDIS_Y = 0.22, 0.8
_MESSAGE, _WRITE, _STALE, _DOWN = "tab:blue", "tab:green", "tab:red", "0.85"
_COLORS = {"message": _MESSAGE, "write": _WRITE, "load": "tab:orange"}
FIGSIZE = (8.0, 4.5)


def positions(nodes: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Box centres in axes coordinates: Redis at the top, the nodes in a row below."""
    n = max(len(nodes), 1)
    spots = {name: ((i + 0.5) / n, _NODE_Y) for i, name in enumerate(nodes)}
    spots[REDIS] = (0.5, _REDIS_Y)
    return spots


def draw_frame(ax: Axes, frame: Frame) -> None:
    """Draw one frame on a cleared Axes."""
    ax.clear()
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_axis_off()
    spots = positions(frame.nodes)
    _draw_redis(ax, frame, spots[REDIS])
    width = min(0.9 / max(len(frame.nodes), 1), 0.22)
    stale = {node for node, _ in frame.stale}
    for name in frame.nodes:
        _draw_node(ax, frame, name, spots[name], width, name in stale)
    for dot in frame.dots:
        x, y = _along(spots, dot.src, dot.dst, dot.progress)
        color = _COLORS.get(dot.what, _MESSAGE)
        ax.plot([x], [y], "o", color=color, markersize=9, zorder=5)
        ax.annotate(
            f"{dot.key} v{dot.version}",
            (x, y),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=7,
            color=color,
            zorder=5,
        )
    for cross in frame.drops:
        x, y = _along(spots, cross.src, cross.dst, cross.progress)
        ax.plot([x], [y], "x", color=_STALE, markersize=14, markeredgewidth=3, zorder=6)
    _draw_key(ax)
    ax.set_title(f"t = {frame.t * 1000:.1f} ms", loc="left", fontsize=10)
    ax.text(
        0.0, 0.97, frame.caption, fontsize=8, va="top", family="monospace", transform=ax.transAxes
    )


def _draw_key(ax: Axes) -> None:
    """What the colours mean, along the bottom edge."""
    items = (
        ("message", _MESSAGE, "o"),
        ("write", _WRITE, "o"),
        ("read reply", "tab:orange", "o"),
        ("lost", _STALE, "x"),
    )
    for i, (label, color, marker) in enumerate(items):
        x = 0.02 + i * 0.16
        ax.plot([x], [0.01], marker, color=color, markersize=6, transform=ax.transAxes)
        ax.text(x + 0.015, 0.01, label, fontsize=7, va="center", transform=ax.transAxes)


def _along(
    spots: dict[str, tuple[float, float]], src: str, dst: str, p: float
) -> tuple[float, float]:
    """A point ``p`` of the way from the edge of ``src``'s box to ``dst``'s."""
    (x0, y0), (x1, y1) = spots.get(src, spots[REDIS]), spots.get(dst, spots[REDIS])
    y0, y1 = _edge(y0, y1), _edge(y1, y0)
    return x0 + (x1 - x0) * p, y0 + (y1 - y0) * p


def _edge(y: float, towards: float) -> float:
    """The top or bottom edge of a box, whichever faces ``towards``."""
    half = 0.06 if y == _REDIS_Y else 0.18
    return y + half if towards > y else y - half


def _draw_redis(ax: Axes, frame: Frame, at: tuple[float, float]) -> None:
    """The Redis box with each key's current version."""
    x, y = at
    ax.add_patch(
        FancyBboxPatch(
            (x - 0.16, y - 0.06), 0.32, 0.12, boxstyle="round,pad=0.01", fc="#fde2e2", ec="tab:red"
        )
    )
    keys = ", ".join(f"{k} v{v}" for k, v in sorted(frame.store.items())[:4]) or "empty"
    ax.text(x, y + 0.02, "Redis", ha="center", va="center", weight="bold")
    ax.text(x, y - 0.03, keys, ha="center", va="center", fontsize=8)


def _draw_node(
    ax: Axes, frame: Frame, name: str, at: tuple[float, float], width: float, stale: bool
) -> None:
    """One node's box listing its cached keys; stale reads in red, a down node greyed."""
    x, y = at
    down = name in frame.down
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - 0.18),
            width,
            0.36,
            boxstyle="round,pad=0.01",
            fc=_DOWN if down else "#e8f1fb",
            ec=_STALE if stale else "tab:blue",
            lw=3 if stale else 1,
            hatch="//" if down else None,
        )
    )
    ax.text(
        x, y + 0.14, name + (" (cut off)" if down else ""), ha="center", weight="bold", fontsize=9
    )
    cache = sorted(frame.caches.get(name, {}).items())
    stale_keys = {key for node, key in frame.stale if node == name}
    read_keys = {key for node, key in frame.reads if node == name}
    for row, (key, version) in enumerate(cache[:_ROWS]):
        color = _STALE if key in stale_keys else "black"
        weight = "bold" if key in stale_keys | read_keys else "normal"
        ax.text(
            x,
            y + 0.07 - row * 0.045,
            f"{key} v{version}",
            ha="center",
            fontsize=8,
            color=color,
            weight=weight,
            family="monospace",
        )
    if len(cache) > _ROWS:
        ax.text(x, y - 0.2 + 0.02, f"+{len(cache) - _ROWS} more", ha="center", fontsize=7)
    if stale:
        ax.text(x, y - 0.24, "STALE READ", ha="center", color=_STALE, weight="bold", fontsize=8)


def _frames(trace_or_frames: Iterable[Any], **options: Any) -> list[Frame]:
    """Frames as given, or built from a trace."""
    items = list(trace_or_frames)
    if items and all(isinstance(f, Frame) for f in items):
        return items
    return build_frames(items, **options)


def animate(trace: Iterable[Any], *, interval: int = 250, **options: Any) -> FuncAnimation:
    """A matplotlib animation of a trace (or of frames); show it with ``to_jshtml()``."""
    frames = _frames(trace, **options)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    plt.close(fig)  # the animation shows it; a second static copy would only confuse

    def update(i: int) -> list[Any]:
        draw_frame(ax, frames[i])
        return []

    return FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)


def render_png(frame: Frame, dpi: int = 80) -> bytes:
    """One frame as PNG bytes, drawn off-screen (no pyplot figure is left open)."""
    fig = Figure(figsize=FIGSIZE, dpi=dpi)
    FigureCanvasAgg(fig)
    draw_frame(fig.add_subplot(), frame)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
