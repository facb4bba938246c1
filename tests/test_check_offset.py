"""The checker's clock uncertainty: ``check(history, offset=...)`` for clocks that disagree."""

from __future__ import annotations

import math
import random

import pytest

from cachelab.check import check, reflected_shares, stale_reads
from cachelab.history import Op


def read(node: str, start: float, version: int) -> Op:
    """A 1 ms read of key "k"."""
    return Op(node, "read", "k", start, start + 0.001, version, False)


def write(node: str, end: float, version: int) -> Op:
    """A 1 ms write of key "k" ending at ``end``."""
    return Op(node, "write", "k", end - 0.001, end, version, False)


# b reads version 1 5 ms after a wrote version 2: stale on one clock, unsure on clocks 10 ms apart
STALE_BY_5MS = [write("a", 1.000, 1), write("a", 2.000, 2), read("b", 2.005, 1)]


def test_a_stale_read_counts_at_offset_zero() -> None:
    report = check(STALE_BY_5MS)
    assert report.stale_reads == 1
    assert report.staleness_max == pytest.approx(0.005)


def test_an_offset_that_covers_the_gap_forgives_it() -> None:
    assert check(STALE_BY_5MS, offset=0.010).stale_reads == 0


def test_an_offset_smaller_than_the_gap_keeps_it_with_its_true_staleness() -> None:
    report = check(STALE_BY_5MS, offset=0.002)
    assert report.stale_reads == 1
    assert report.staleness_max == pytest.approx(0.005)  # measured from W.end, not W.end + offset


def test_the_boundary_is_strict() -> None:
    # W.end + offset == R.start: the two may be concurrent, so the read is not stale
    ops = [write("a", 1.0, 1), write("a", 2.0, 2), read("b", 2.5, 1)]
    assert check(ops, offset=0.5).stale_reads == 0
    assert check(ops, offset=0.499).stale_reads == 1


def test_reflection_windows_widen_by_the_offset() -> None:
    ops = [write("a", 1.000, 1), write("a", 2.000, 2), read("b", 2.005, 1)]
    assert reflected_shares(ops, windows=(0.004,)) == ((0.004, 0.5),)  # write 2 lags 5 ms
    assert check(ops, windows=(0.004,), offset=0.002).reflected == ((0.004, 1.0),)  # 5 - 2 < 4


def test_same_node_rules_ignore_the_offset() -> None:
    # one process, one clock: b's own write then b's older read is a violation whatever offset
    ops = [write("b", 1.0, 1), write("b", 2.0, 2), read("b", 2.005, 1)]
    assert check(ops, offset=0.010).read_your_writes_violations == 1


def test_offset_zero_changes_nothing_on_random_histories() -> None:
    rng = random.Random(3)
    ops = [
        Op(node, op, key, t, t + rng.random(), rng.randrange(5), False)
        for node, op, key, t in (
            (rng.choice("abc"), rng.choice(["read", "write"]), rng.choice("xy"), rng.random() * 10)
            for _ in range(300)
        )
    ]
    assert check(ops, offset=0.0) == check(ops)
    assert stale_reads(ops, 0.0) == stale_reads(ops)


@pytest.mark.parametrize("bad", [-0.001, math.inf, math.nan])
def test_a_bad_offset_is_refused_by_name(bad: float) -> None:
    with pytest.raises(ValueError, match="offset"):
        check(STALE_BY_5MS, offset=bad)


def test_an_offset_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="offset"):
        check(STALE_BY_5MS, offset="0.1")  # type: ignore[arg-type]
