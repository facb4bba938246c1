"""Histories of several processes, merged: each key's incarnations numbered alike for all."""

from __future__ import annotations

from cachelab.check import check, stale_reads
from cachelab.harness.runner import merge
from cachelab.history import Recorder, incarnations


def test_a_process_that_joined_after_a_reset_reads_the_new_incarnation_as_fresh() -> None:
    a, b = Recorder(), Recorder()
    a("a", "write", "k", 1.0, 2.0, 5, False, "old")
    a("a", "write", "k", 3.0, 4.0, 1, False, "new")  # FLUSHALL in between: seq 1 of "new"
    b("b", "read", "k", 5.0, 6.0, 1, False, "new")  # b never met "old": it calls "new" 0
    separately = sorted(a.history + b.history, key=lambda op: op.end)
    assert check(separately).stale_reads == 1  # what each process's own numbering claimed
    assert check(merge({"a": a.history, "b": b.history})).stale_reads == 0


def test_an_old_incarnations_value_read_late_is_stale_whoever_met_it_first() -> None:
    a, b = Recorder(), Recorder()
    a("a", "write", "k", 1.0, 2.0, 5, False, "old")
    a("a", "write", "k", 3.0, 4.0, 1, False, "new")
    b("b", "read", "k", 5.0, 6.0, 1, True, "new")
    b("b", "read", "k", 7.0, 8.0, 5, True, "old")  # b met "old" second: it called it newer
    separately = sorted(a.history + b.history, key=lambda op: op.end)
    # each process's own numbering flags the fresh read and hides the stale one
    assert [read.start for read, _ in stale_reads(separately)] == [5.0]
    merged = merge({"a": a.history, "b": b.history})
    assert [read.start for read, _ in stale_reads(merged)] == [7.0]


def test_incarnations_are_numbered_per_key_by_their_earliest_op() -> None:
    a, b = Recorder(), Recorder()
    a("a", "write", "k", 3.0, 4.0, 1, False, "y")
    b("b", "read", "k", 1.0, 2.0, 9, False, "x")
    b("b", "read", "j", 5.0, 6.0, 2, False, "y")
    assert incarnations([*a.history, *b.history]) == {("k", "x"): 0, ("k", "y"): 1, ("j", "y"): 0}
