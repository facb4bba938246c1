"""The challenge grader, tested by the library's own safeguards and by wrong answers."""

from __future__ import annotations

from typing import Any

import pytest

from cachelab.lab.challenges import (
    CHALLENGES,
    Challenge,
    evict,
    evict_and_track_gaps,
    replace,
    shrink,
    silent,
)
from cachelab.local import LocalStore
from cachelab.messages import Message
from cachelab.sim.workloads import Request


@pytest.mark.parametrize("challenge", CHALLENGES.values(), ids=lambda c: c.name)
def test_the_reference_passes_and_the_switched_off_safeguard_fails(challenge: Challenge) -> None:
    assert challenge.grade(challenge.reference, shrink=False).passed
    off = challenge.grade(challenge.switched_off, shrink=False)
    assert not off.passed and off.counterexample is not None


def pop_only(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Drop the key if held: forgets invalidations of keys not cached (a stale set)."""
    return store.data.pop(msg.key, None) is not None


def newer(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Ordering by hand: ignore what is not newer than what the store knows."""
    return msg.seq > store.known_version(msg.key) and replace(store, msg, memo)


@pytest.mark.parametrize(
    ("name", "wrong", "right"),
    [
        ("tell_the_peers", silent, evict),
        ("remember_the_absent", pop_only, evict),
        ("newer_only", replace, newer),
        ("survive_loss", evict, evict_and_track_gaps),
    ],
)
def test_a_student_answer_fails_then_passes(name: str, wrong: Any, right: Any) -> None:
    challenge = CHALLENGES[name]
    failed = challenge.grade(wrong)
    assert not failed.passed and "FAIL" in str(failed)
    passed = challenge.grade(right)
    assert passed.passed and passed.counterexample is None and passed.viewer() is None
    assert "PASS" in passed._repr_html_()


def test_the_counterexample_is_short_and_still_fails() -> None:
    grade = CHALLENGES["remember_the_absent"].grade(pop_only)
    example = grade.counterexample
    assert example is not None
    full = next(o.result for o in grade.outcomes if not o.passed)
    assert example.report.stale_reads > 0
    assert len(example.history) < len(full.history) // 4
    viewer = grade.viewer()
    assert viewer.panes[0]["title"] == "COUNTEREXAMPLE" and viewer.panes[0]["ok"] is False
    assert any(row["kind"] == "stale_read" for row in viewer.panes[0]["events"])


def test_shrink_keeps_exactly_what_the_failure_needs() -> None:
    items = [Request(float(i), 0, "read", f"k{i}") for i in range(40)]
    needed = {items[3], items[17], items[31]}
    assert shrink(items, lambda trial: needed <= set(trial)) == [items[3], items[17], items[31]]
    assert len(shrink(items, lambda trial: needed <= set(trial), budget=5)) > 3  # out of runs


def test_each_node_has_its_own_memo() -> None:
    seen: dict[int, list[int]] = {}

    def spy(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
        memo.setdefault("seqs", []).append(msg.seq)
        seen[id(memo)] = memo["seqs"]
        return evict(store, msg, memo)

    CHALLENGES["tell_the_peers"].grade(spy, shrink=False)
    assert len(seen) >= 2 and all(seqs == sorted(seqs) for seqs in seen.values())
