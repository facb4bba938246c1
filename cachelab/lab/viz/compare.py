"""Broken and fixed, side by side: one scenario, two traces, one clock, the checker's verdicts."""

from __future__ import annotations

from typing import Any

from cachelab.lab.viz.timeline import pane
from cachelab.lab.viz.viewer import TraceViewer
from cachelab.sim.result import SimResult
from cachelab.sim.scenarios import Scenario, Variant


def verdict(scenario: Scenario, variant: Variant, result: SimResult) -> tuple[str, bool | None]:
    """The checker's word on one run: ``16 stale reads, worst 850 ms`` and kept-or-not."""
    report = result.report
    value = scenario.measure(result)
    words = [f"{report.stale_reads} stale of {report.reads} reads"]
    if report.stale_reads:
        words.append(f"worst {report.staleness_max * 1000:.0f} ms")
    if scenario.metric not in ("stale_reads", "staleness_max"):
        words.append(f"{scenario.describe(value)} {scenario.metric.replace('_', ' ')}")
    kept = scenario.kept(variant, value)
    if kept is not None and variant.bound is not None:
        promise = scenario.describe(variant.bound)
        words.append(f"promise ≤ {promise} {'kept' if kept else 'BROKEN'}")
    return ", ".join(words), (not variant.broken) if kept is None else kept


def variant_pane(scenario: Scenario, variant: Variant, result: SimResult) -> dict[str, Any]:
    """One variant's run as a viewer pane titled BROKEN or FIXED."""
    words, ok = verdict(scenario, variant, result)
    title = f"{'BROKEN' if variant.broken else 'FIXED'}: {variant.label}"
    off = [name for name, value in variant.options.items() if value is False]
    return pane(result.trace, nodes=result.nodes, carries_value=result.carries_value,
                title=title, verdict=words, ok=ok, off=off)


def side_by_side(
    scenario: Scenario, broken: Variant | None = None, fixed: Variant | None = None
) -> TraceViewer:
    """The broken run on the left, the fixed run on the right, on one clock."""
    left, right = broken or scenario.broken, fixed or scenario.fixed
    viewer = TraceViewer()
    viewer.show([variant_pane(scenario, v, v.run()) for v in (left, right)])
    return viewer
