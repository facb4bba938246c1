"""Workloads: seeded, sorted in time, and shaped as their parameters say."""

from __future__ import annotations

from collections import Counter

import pytest

from cachelab.sim.workloads import Bursts, Request, every, hot_key, merge, uniform, zipf


def test_a_workload_is_reproducible_from_its_seed() -> None:
    assert list(zipf(500, 4, seed=3)) == list(zipf(500, 4, seed=3))
    assert list(zipf(500, 4, seed=3)) != list(zipf(500, 4, seed=4))


def test_requests_are_sorted_in_time_and_spread_over_the_nodes() -> None:
    requests = list(uniform(2000, 5, rate=1000.0, seed=1))
    assert [r.time for r in requests] == sorted(r.time for r in requests)
    assert {r.node for r in requests} == set(range(5))
    assert 1.6 < requests[-1].time < 2.4  # 2000 requests at 1000/s


def test_the_read_ratio_is_respected() -> None:
    ops = Counter(r.op for r in uniform(5000, 2, read_ratio=0.8, seed=2))
    assert 0.77 < ops["read"] / 5000 < 0.83


def test_zipf_skew_concentrates_on_the_first_keys() -> None:
    skewed = Counter(r.key for r in zipf(5000, 1, keys=100, skew=1.2, seed=5))
    flat = Counter(r.key for r in zipf(5000, 1, keys=100, skew=0.0, seed=5))
    assert skewed.most_common(1)[0][0] == "k0"
    assert skewed["k0"] > 4 * flat["k0"]


def test_a_hot_key_takes_its_share() -> None:
    keys = Counter(r.key for r in hot_key(4000, 2, share=0.5, seed=6))
    assert 0.47 < keys["hot"] / 4000 < 0.53


def test_bursts_raise_the_rate_inside_the_burst() -> None:
    bursts = Bursts(every=1.0, length=0.1, factor=10.0)
    times = [r.time for r in uniform(6000, 1, rate=1000.0, bursts=bursts, seed=7)]
    inside = sum(t % 1.0 < 0.1 for t in times)
    density_ratio = (inside / 0.1) / ((len(times) - inside) / 0.9)
    assert 7.0 < density_ratio < 13.0


def test_external_writes_come_from_no_node() -> None:
    writes = [r for r in uniform(4000, 3, read_ratio=0.5, external=0.5, seed=8) if r.op != "read"]
    external = [r for r in writes if r.op == "external"]
    assert 0.4 < len(external) / len(writes) < 0.6
    assert {r.node for r in external} == {-1}


def test_merge_and_every_build_scripts() -> None:
    polls = every(0.5, 0.0, 2.0, 1, "read", "k")
    script = [Request(0.75, 0, "write", "k")]
    merged = list(merge(script, polls))
    assert [(r.time, r.op) for r in merged] == [
        (0.0, "read"),
        (0.5, "read"),
        (0.75, "write"),
        (1.0, "read"),
        (1.5, "read"),
    ]


@pytest.mark.parametrize(
    "options",
    [{"ops": -1}, {"nodes": 0}, {"read_ratio": 1.5}, {"rate": 0.0}, {"skew": -1.0}, {"keys": 0}],
)
def test_bad_parameters_are_refused_at_once(options: dict[str, float]) -> None:
    arguments = {"ops": 10, "nodes": 2, **options}
    with pytest.raises(ValueError):
        zipf(**arguments)  # type: ignore[arg-type]
