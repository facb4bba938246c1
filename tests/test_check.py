"""The consistency checker on hand-written histories whose answers are known."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachelab.check import (
    SMALL_RUN,
    STALENESS_EDGES,
    Report,
    check,
    histogram,
    monotonic_read_violations,
    percentile,
    read_your_writes_violations,
    reflected_shares,
    reflection_lags,
    stale_reads,
)
from cachelab.history import INCARNATION_SHIFT, Op, Recorder


def read(node: str, key: str, start: float, end: float, version: int, hit: bool = False) -> Op:
    """A read op."""
    return Op(node, "read", key, start, end, version, hit)


def write(node: str, key: str, start: float, end: float, version: int, op: str = "write") -> Op:
    """A write op (or delete / invalidate)."""
    return Op(node, op, key, start, end, version, False)


# -- empty and trivial --------------------------------------------------------


def test_empty_history() -> None:
    report = check([])
    assert (report.reads, report.writes, report.stale_reads) == (0, 0, 0)
    assert report.stale_fraction == 0.0
    assert report.nines == math.inf
    assert report.hit_rate == 0.0
    assert report.reflected == ((0.001, 1.0), (0.01, 1.0), (0.1, 1.0), (1.0, 1.0))
    assert report.peak_store_ops == 0 and report.peak_store_rate == 0.0
    assert report.messages_per_write is None
    assert report.staleness_max == 0.0 and sum(report.staleness_counts) == 0
    assert "0 reads" in str(report)


def test_fresh_reads_have_infinite_nines() -> None:
    report = check([write("a", "k", 0, 1, 1), read("b", "k", 2, 3, 1)])
    assert report.stale_reads == 0
    assert report.nines == math.inf


def test_reads_of_keys_never_written_are_fresh() -> None:
    history = [
        read("a", "k", 0, 1, 0),
        read("b", "k", 5, 6, 0),
        write("a", "other", 0, 1, 3),
        read("a", "unwritten", 2, 3, 7),  # written before recording began
    ]
    assert check(history).stale_reads == 0


# -- stale or not ---------------------------------------------------------------


def test_read_after_completed_newer_write_is_stale() -> None:
    history = [write("a", "k", 0.0, 1.0, 2), read("b", "k", 3.0, 3.5, 1)]
    report = check(history)
    assert report.stale_reads == 1
    assert report.stale_fraction == 1.0
    assert report.nines == 0.0
    assert stale_reads(history) == [(history[1], 2.0)]


def test_write_overlapping_the_read_does_not_make_it_stale() -> None:
    history = [write("a", "k", 0.0, 2.0, 2), read("b", "k", 1.0, 3.0, 1)]
    assert check(history).stale_reads == 0


def test_write_ending_exactly_when_the_read_starts_is_concurrent() -> None:
    history = [write("a", "k", 0.0, 1.0, 2), read("b", "k", 1.0, 3.0, 1)]
    assert check(history).stale_reads == 0


def test_read_overlapping_a_write_may_return_either_version() -> None:
    history = [
        write("a", "k", 0.0, 1.0, 1),
        write("a", "k", 2.0, 4.0, 2),
        read("b", "k", 3.0, 3.5, 1),
        read("c", "k", 3.0, 3.5, 2),
    ]
    assert check(history).stale_reads == 0


def test_staleness_counts_from_the_first_newer_write() -> None:
    history = [
        write("a", "k", 0.0, 1.0, 2),
        write("a", "k", 1.5, 2.0, 3),
        write("a", "k", 2.5, 3.0, 4),
        read("b", "k", 5.0, 6.0, 2),  # missed v3 (ended at 2) and v4
        read("b", "k", 5.0, 6.0, 1),  # missed v2 (ended at 1) first
        read("b", "k", 5.0, 6.0, 4),  # fresh
    ]
    found = {op.version: s for op, s in stale_reads(history)}
    assert found == {2: 3.0, 1: 4.0}
    report = check(history)
    assert report.stale_reads == 2
    assert report.stale_fraction == pytest.approx(2 / 3)
    assert report.nines == pytest.approx(-math.log10(2 / 3))


def test_first_newer_write_is_the_earliest_to_complete_not_the_lowest_version() -> None:
    history = [
        write("a", "k", 0.0, 3.0, 2),  # slow client: v2 completes after v3
        write("b", "k", 0.5, 1.0, 3),
        read("c", "k", 5.0, 6.0, 1),
        read("c", "k", 5.0, 6.0, 2),
    ]
    found = {op.version: s for op, s in stale_reads(history)}
    assert found == {1: 4.0, 2: 4.0}


def test_delete_and_invalidate_are_writes() -> None:
    history = [
        write("a", "k", 0, 1, 2, op="delete"),
        write("a", "j", 0, 1, 3, op="invalidate"),
        read("b", "k", 2, 3, 1),
        read("b", "j", 2, 3, 1),
    ]
    report = check(history)
    assert report.writes == 2
    assert report.stale_reads == 2


def test_unsorted_input_gives_the_same_report() -> None:
    history = [
        write("a", "k", 0.0, 1.0, 2),
        read("b", "k", 3.0, 3.5, 1, hit=True),
        write("b", "k", 4.0, 4.1, 5),
        read("a", "k", 4.5, 4.6, 2),
        read("a", "k", 4.7, 4.8, 5),
        read("b", "j", 0.5, 0.6, 0),
    ]
    shuffled = history[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != history
    assert check(shuffled) == check(history)
    assert check(reversed(history)).stale_reads == 2


def test_unknown_op_and_bad_windows_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown op"):
        check([Op("a", "get", "k", 0, 1, 0)])
    with pytest.raises(ValueError, match="> 0"):
        check([], windows=(0.0,))
    with pytest.raises(ValueError, match="> 0"):
        check([], store_window=0)


# -- Polaris: reflected within M --------------------------------------------------


def test_reflected_shares_per_window() -> None:
    history = [
        write("a", "k", 0.0, 1.0, 1),
        read("b", "k", 1.0005, 1.001, 0),  # misses v1 for 0.5 ms
        write("a", "k", 1.5, 2.0, 2),
        read("c", "k", 2.05, 2.06, 1),  # misses v2 for 50 ms
        read("c", "k", 2.5, 2.6, 2),
        write("a", "lonely", 0.0, 1.0, 9),  # never read: reflected
    ]
    lags = {op.version: lag for op, lag in reflection_lags(history)}
    assert lags == pytest.approx({1: 0.0005, 2: 0.05, 9: 0.0})
    report = check(history)
    shares = dict(report.reflected)
    assert shares == pytest.approx({0.001: 2 / 3, 0.01: 2 / 3, 0.1: 1.0, 1.0: 1.0})


def test_superseded_write_is_charged_by_every_read_older_than_it() -> None:
    history = [
        write("a", "k", 0.0, 1.0, 1),
        write("a", "k", 1.2, 1.5, 2),
        read("b", "k", 3.0, 3.1, 0),  # saw neither change
        read("c", "k", 2.0, 2.1, 1),  # saw v1: reflects v1, misses v2
    ]
    lags = {op.version: lag for op, lag in reflection_lags(history)}
    assert lags == pytest.approx({1: 2.0, 2: 1.5})
    assert reflected_shares(history, (1.0, 1.6, 2.5)) == ((1.0, 0.0), (1.6, 0.5), (2.5, 1.0))


def test_newer_version_reflects_older_write_and_concurrent_reads_do_not_count() -> None:
    history = [
        write("a", "k", 0.0, 1.0, 1),
        write("a", "k", 2.0, 3.0, 2),
        read("b", "k", 0.5, 5.0, 0),  # started before v1 completed: concurrent
        read("b", "k", 9.0, 9.5, 2),  # newer than v1: reflects it
    ]
    assert reflected_shares(history, (0.001,)) == ((0.001, 1.0),)


def test_read_exactly_at_end_plus_window_counts_against_the_write() -> None:
    history = [write("a", "k", 0.0, 1.0, 1), read("b", "k", 1.5, 1.6, 0)]
    assert reflected_shares(history, (0.5, 0.75)) == ((0.5, 0.0), (0.75, 1.0))


# -- session guarantees ---------------------------------------------------------


def test_monotonic_read_violation_on_one_node_only() -> None:
    history = [
        read("a", "k", 0.0, 1.0, 2),
        read("a", "k", 2.0, 3.0, 1),  # went back in time on node a
        read("b", "k", 2.0, 3.0, 1),  # node b never saw v2
        read("a", "k", 0.5, 1.5, 1),  # overlaps the v2 read: no order
        read("a", "j", 2.0, 3.0, 0),  # another key
    ]
    assert monotonic_read_violations(history) == 1
    assert check(history).monotonic_read_violations == 1


def test_read_your_writes_violation() -> None:
    history = [
        write("a", "k", 0.0, 1.0, 5),
        read("a", "k", 2.0, 2.5, 4),  # a forgot its own write
        read("b", "k", 2.0, 2.5, 4),  # stale, but not b's write
        read("a", "k", 0.5, 0.8, 4),  # during the write
        read("a", "k", 3.0, 3.5, 5),
    ]
    assert read_your_writes_violations(history) == 1
    report = check(history)
    assert report.read_your_writes_violations == 1
    assert report.stale_reads == 2


# -- histogram and percentiles --------------------------------------------------


STALENESS = [2e-6, 3e-4, 4e-4, 5e-3, 6e-3, 0.2, 0.3, 2.0, 20.0, 500.0]


def stale_by(values: list[float]) -> list[Op]:
    """One write ending at 0 and one stale read per value, starting that long after."""
    return [write("w", "k", -1.0, 0.0, 1)] + [read("r", "k", s, s + 1.0, 0) for s in values]


def test_histogram_and_percentiles_of_known_staleness() -> None:
    report = check(stale_by(STALENESS))
    assert report.stale_reads == 10
    assert report.staleness_edges == STALENESS_EDGES
    assert report.staleness_counts == (0, 1, 0, 2, 2, 0, 2, 1, 1, 1)
    assert report.staleness_p50 == 6e-3  # 5th of 10 (nearest rank)
    assert report.staleness_p90 == 20.0  # 9th
    assert report.staleness_p99 == 500.0
    assert report.staleness_p999 == 500.0
    assert report.staleness_max == 500.0


def test_histogram_with_custom_edges_and_percentile_helper() -> None:
    assert histogram([0.5, 1.0, 1.5, 3.0, 9.0], (0.0, 1.0, 2.0, 4.0)) == (1, 2, 1)
    assert check(stale_by([0.5, 1.5]), edges=(0.0, 1.0, math.inf)).staleness_counts == (1, 1)
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.07) == 7.0
    assert percentile(values, 0.999) == 100.0
    assert percentile([], 0.5) == 0.0


# -- load, hits, messages -----------------------------------------------------------


def test_peak_store_load_counts_misses_and_writes_not_hits() -> None:
    history = [
        read("a", "k", 0.1, 0.15, 0),
        read("a", "k", 0.2, 0.25, 0, hit=True),
        write("a", "k", 0.6, 0.7, 1),
        read("b", "k", 1.1, 1.15, 1),
        *(read("b", "k", t, t + 0.01, 1) for t in (2.2, 2.3, 2.4, 2.6)),
        *(read("c", "k", t, t + 0.01, 1, hit=True) for t in (2.21, 2.31, 2.41, 2.42)),
    ]
    per_second = check(history, store_window=1.0)
    assert (per_second.peak_store_ops, per_second.peak_store_rate) == (4, 4.0)
    half = check(history, store_window=0.5)
    assert (half.peak_store_ops, half.peak_store_rate) == (3, 6.0)


def test_hit_rate_messages_and_nodes() -> None:
    history = [
        write("a", "k", 0, 1, 1),
        write("b", "k", 1, 2, 2),
        read("a", "k", 3, 4, 2, hit=True),
        read("a", "k", 5, 6, 2, hit=True),
        read("c", "k", 5, 6, 2, hit=True),
        read("c", "k", 7, 8, 2),
    ]
    report = check(history, messages=6)
    assert report.hits == 3 and report.hit_rate == 0.75
    assert report.messages_per_write == 3.0
    assert report.nodes == 3
    assert check(history, nodes=5).nodes == 5
    assert check(history).messages is None and check(history).messages_per_write is None


# -- presentation -------------------------------------------------------------


def test_str_contains_the_key_numbers() -> None:
    history = [*stale_by([0.002, 0.004]), read("x", "k", 9.0, 9.5, 1, hit=True)]
    text = str(check(history, messages=7))
    assert "3 reads, 1 writes" in text
    assert "stale reads       2 (fraction 0.666667" in text
    assert "0.18 nines" in text
    assert "hit rate          33.33%" in text
    assert "7 delivered, 7 per write" in text
    assert "peak 2 ops" in text
    assert "p50 2ms" in text and "max 4ms" in text
    assert "[1ms, 10ms): 2" in text
    assert "TAO" in text and "Cache made consistent" in text and "memcache" not in text


def test_html_report_is_compact_for_a_small_run() -> None:
    history = [*stale_by([0.002, 0.004]), read("x", "k", 9.0, 9.5, 1, hit=True)]
    page = check(history, messages=7)._repr_html_()
    assert "2 of 3 reads (66.7%)" in page and "p50 2ms" in page and "max 4ms" in page
    assert "nines" not in page and "TAO" not in page and "store load" not in page
    assert "0.666667" not in page and "session" not in page


def test_html_report_of_a_large_run_cites_a_sourced_anchor() -> None:
    history = [read("x", "k", float(i), i + 0.5, 0, hit=True) for i in range(SMALL_RUN)]
    page = check(history)._repr_html_()
    assert "no failures (inf nines)" in page and "store load" in page
    assert "Cache made consistent" in page and "staleness" not in page


def test_to_dict_is_flat_and_has_the_contract_keys() -> None:
    report = check(stale_by(STALENESS), messages=20)
    flat = report.to_dict()
    for key in ("reads", "stale_reads", "stale_fraction", "nines", "hit_rate"):
        assert key in flat
    assert flat["reads"] == 10 and flat["stale_reads"] == 10
    assert all(isinstance(v, (int, float)) or v is None for v in flat.values())
    assert flat["reflected_within_1s"] == 0.0
    assert set(flat) >= {f"reflected_within_{m:g}s" for m in (0.001, 0.01, 0.1, 1.0)}
    hist = {k: v for k, v in flat.items() if k.startswith("staleness_hist_")}
    assert len(hist) == len(STALENESS_EDGES) - 1
    assert hist["staleness_hist_0.1_1"] == 2
    assert sum(hist.values()) == 10
    assert isinstance(report, Report)


# -- property: fast checker against brute force --------------------------------------


def brute_stale(history: list[Op]) -> list[float]:
    """O(n^2): staleness of every stale read, sorted."""
    found = []
    for r in history:
        newer = [
            w.end
            for w in history
            if w.op != "read" and w.key == r.key and w.end < r.start and w.version > r.version
        ]
        if r.op == "read" and newer:
            found.append(r.start - min(newer))
    return sorted(found)


def brute_older(history: list[Op], kinds: set[str]) -> int:
    """O(n^2): reads older than a same-node, same-key op of ``kinds`` that preceded them."""
    return sum(
        any(
            o.op in kinds and (o.node, o.key) == (r.node, r.key)
            for o in history
            if o.end < r.start and o.version > r.version
        )
        for r in history
        if r.op == "read"
    )


def brute_lag(history: list[Op], w: Op) -> float:
    """O(n): latest start of a read of w's key older than w, after w ended, minus w.end."""
    starts = [
        r.start - w.end
        for r in history
        if r.op == "read" and r.key == w.key and r.start > w.end and r.version < w.version
    ]
    return max(starts, default=0.0)


op_strategy = st.builds(
    lambda node, kind, key, start, length, version, hit: Op(
        node, kind, key, float(start), float(start + length), version, hit
    ),
    st.sampled_from(["n1", "n2"]),
    st.sampled_from(["read", "read", "write", "delete"]),
    st.sampled_from(["a", "b"]),
    st.integers(0, 20),
    st.integers(0, 4),
    st.integers(0, 8),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op_strategy, max_size=30))
def test_fast_checker_matches_brute_force(history: list[Op]) -> None:
    report = check(history, windows=(0.5, 1.0, 3.0))
    expected = brute_stale(history)
    assert report.stale_reads == len(expected)
    assert sorted(s for _, s in stale_reads(history)) == expected
    assert report.staleness_max == (expected[-1] if expected else 0.0)
    assert report.monotonic_read_violations == brute_older(history, {"read"})
    assert report.read_your_writes_violations == brute_older(history, {"write", "delete"})
    lags = [brute_lag(history, op) for op in history if op.op != "read"]
    for m, share in report.reflected:
        assert share == (sum(lag < m for lag in lags) / len(lags) if lags else 1.0)


def test_incarnations_are_numbered_per_key_so_processes_agree() -> None:
    first, second = Recorder(), Recorder()  # two processes: they meet the stripes in turn
    first("a", "read", "x", 0.0, 1.0, 5, False, "inc-of-x")
    first("a", "read", "y", 0.0, 1.0, 7, False, "inc-of-y")
    second("b", "read", "y", 0.0, 1.0, 7, False, "inc-of-y")
    second("b", "read", "x", 0.0, 1.0, 5, False, "inc-of-x")
    assert [op.version for op in first.history] == [5, 7]
    assert [op.version for op in second.history] == [7, 5]
    first("a", "read", "x", 2.0, 3.0, 1, False, "inc-after-a-reset")
    assert first.history[-1].version == 1 << INCARNATION_SHIFT | 1
