"""Every scenario: its broken variant fails, and each fix stays within its stated bound."""

from __future__ import annotations

import pytest

from cachelab.sim.scenarios import CATALOGUE, Scenario

ISSUE_THREE = [
    "stale_set",
    "two_writers",
    "db_ordering",
    "lost_message",
    "reorder",
    "tombstones",
    "read_your_writes",
    "negative_cache",
    "herd",
    "partition",
    "external_writer",
]


def test_the_catalogue_has_the_eleven_scenarios_of_issue_three_then_the_blip() -> None:
    assert list(CATALOGUE) == [*ISSUE_THREE, "blip"]


@pytest.mark.parametrize("scenario", CATALOGUE.values(), ids=list(CATALOGUE))
def test_each_scenario_is_explained_and_has_both_kinds_of_variant(scenario: Scenario) -> None:
    assert len(scenario.explanation) > 200 and scenario.title
    assert scenario.broken.broken and scenario.broken.bound is None
    assert not scenario.fixed.broken
    assert all(v.bound is not None for v in scenario.variants if not v.broken)


@pytest.mark.parametrize("scenario", CATALOGUE.values(), ids=list(CATALOGUE))
def test_broken_fails_and_every_fix_stays_within_its_bound(scenario: Scenario) -> None:
    measured = scenario.compare()
    bounds = {v.name: v.bound for v in scenario.variants if v.bound is not None}
    broken = [measured[v.name] for v in scenario.variants if v.broken]
    for name, bound in bounds.items():
        assert measured[name] <= bound, (name, measured)
        assert min(broken) > bound, (name, measured)
    assert min(broken) > 0


def test_stale_set_broken_run_shows_the_late_fill_in_the_trace() -> None:
    scenario = CATALOGUE["stale_set"]
    broken, fixed = scenario.broken.run(), scenario.fixed.run()
    assert broken.caches["b"] == {"k": 1} and broken.report.stale_reads > 0
    assert [e.node for e in fixed.trace if e.kind == "fill_rejected"] == ["b"]


def test_herd_protection_costs_extra_redis_reads_but_spares_the_database() -> None:
    herd = CATALOGUE["herd"]
    runs = {v.name: v.run() for v in herd.variants}
    loads = {name: len(r.db_loads) for name, r in runs.items()}
    assert loads["unprotected"] > loads["single_flight"] > loads["lease"]
    assert len(runs["lease"].store_reads) > len(runs["single_flight"].store_reads)


def test_not_caching_absence_costs_store_reads() -> None:
    scenario = CATALOGUE["negative_cache"]
    cached, uncached = (v.run() for v in scenario.variants)
    assert len(uncached.store_reads) > len(cached.store_reads)


def test_a_scenario_run_is_deterministic() -> None:
    variant = CATALOGUE["reorder"].broken
    first, second = variant.run(), variant.run()
    assert first.history == second.history and first.trace == second.trace


def test_variants_are_found_by_name() -> None:
    assert CATALOGUE["lost_message"].variant("ttl").bound == 0.4
    with pytest.raises(KeyError):
        CATALOGUE["lost_message"].variant("magic")


def test_a_blip_costs_a_flush_every_key_a_repair_a_few_checks_and_a_replay_nothing() -> None:
    blip = CATALOGUE["blip"]
    runs = {v.name: v.run() for v in blip.variants}
    metrics = {name: run.metrics() for name, run in runs.items()}
    assert all(run.report.stale_reads == 0 for run in runs.values())
    assert {n: (m["store_reads"], m["repair_checks"]) for n, m in metrics.items()} == {
        "flush": (200, 0),  # 100 warm-up reads, then all 100 again
        "repair": (105, 4),  # 100 warm-up, the 5 changed keys; 100 suspects, 25 a check
        "stream": (105, 0),  # 100 warm-up, the 5 changed keys; nothing to check
    }
    b = {name: run.stats["b"] for name, run in runs.items()}
    assert (b["stream"].replays, b["stream"].restored, b["stream"].flushes) == (1, 95, 0)
    assert (b["repair"].repair_kept, b["repair"].repair_dropped) == (95, 5)
    assert b["flush"].flushes >= 1 and b["flush"].hits == 0
    assert runs["stream"].dropped == 0 and runs["repair"].dropped > 0  # nothing lost on it
