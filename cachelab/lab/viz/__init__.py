"""cachelab.lab.viz: plots, the trace viewer and ipywidgets panels for the lab notebooks.

Plots need matplotlib; the viewer and the panel need ipywidgets and anywidget too
(``pip install cachelab[lab]``).
"""

from cachelab.extras import needs_extra

# every submodule needs matplotlib, ipywidgets or anywidget: a missing one names the extra
with needs_extra("lab", __name__):
    from cachelab.lab.viz.compare import side_by_side, verdict
    from cachelab.lab.viz.kinds import KINDS, Kind, kind_of
    from cachelab.lab.viz.panel import ControlPanel, live_panel, render_table, sim_panel
    from cachelab.lab.viz.plots import (
        burst_counts,
        bursts,
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
    from cachelab.lab.viz.timeline import Event, pane
    from cachelab.lab.viz.viewer import TraceViewer

__all__ = [
    "KINDS",
    "ControlPanel",
    "Event",
    "Kind",
    "TraceViewer",
    "burst_counts",
    "bursts",
    "consistency_within",
    "hit_rate_against",
    "hit_rate_over_time",
    "hit_rate_series",
    "kind_of",
    "live_panel",
    "load_series",
    "messages_per_write",
    "nines_chart",
    "pane",
    "render_table",
    "side_by_side",
    "sim_panel",
    "staleness_against_network",
    "staleness_histogram",
    "store_load",
    "variant_bars",
    "verdict",
]
