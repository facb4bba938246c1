"""cachelab.viz: plots, trace animations and ipywidgets panels for the lab notebooks.

Plots need matplotlib; the player and the panel need ipywidgets too (``pip install
cachelab[lab]``).
"""

from cachelab.viz.animation import animate, draw_frame, render_png
from cachelab.viz.frames import Event, Frame, build_frames
from cachelab.viz.panel import ControlPanel, live_panel, render_table, sim_panel
from cachelab.viz.player import TracePlayer
from cachelab.viz.plots import (
    consistency_within,
    hit_rate_against,
    hit_rate_over_time,
    hit_rate_series,
    load_series,
    messages_per_write,
    nines_chart,
    staleness_against_network,
    staleness_histogram,
    store_load,
    variant_bars,
)

__all__ = [
    "ControlPanel",
    "Event",
    "Frame",
    "TracePlayer",
    "animate",
    "build_frames",
    "consistency_within",
    "draw_frame",
    "hit_rate_against",
    "hit_rate_over_time",
    "hit_rate_series",
    "live_panel",
    "load_series",
    "messages_per_write",
    "nines_chart",
    "render_png",
    "render_table",
    "sim_panel",
    "staleness_against_network",
    "staleness_histogram",
    "store_load",
    "variant_bars",
]
