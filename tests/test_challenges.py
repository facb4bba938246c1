"""The challenge grader, tested by the library's own safeguards and by wrong answers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from cachelab.lab.challenges import (
    CHALLENGES,
    Challenge,
    answer_trace,
    drop,
    evict,
    evict_and_track_gaps,
    flush_everything,
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


@pytest.mark.parametrize("challenge", CHALLENGES.values(), ids=lambda c: c.name)
def test_flushing_everything_fails_every_challenge_on_its_cost(challenge: Challenge) -> None:
    grade = challenge.grade(flush_everything, shrink=False)
    cost = next(o for o in grade.outcomes if o.check.name == "cost")
    assert not grade.passed and not cost.passed
    assert cost.value > cost.bound  # more Redis reads than 1.5 times the library's answer
    assert any(note.startswith("too costly:") and "flushing everything" in note
               for note in grade.notes())
    assert "too costly:" in str(grade) and "too costly:" in grade._repr_html_()


@pytest.mark.parametrize("challenge", CHALLENGES.values(), ids=lambda c: c.name)
def test_the_reference_passes_its_own_cost_check(challenge: Challenge) -> None:
    grade = challenge.grade(challenge.reference, shrink=False)
    cost = next(o for o in grade.outcomes if o.check.name == "cost")
    assert cost.passed and grade.notes() == []


def newer_values(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Challenge 3's worked answer, as the notebook writes it."""
    if msg.seq <= store.known_version(msg.key):
        return False
    return store.update(msg.key, msg.value, msg.seq)


def tombstone(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Challenge 2's worked answer, as the notebook writes it."""
    return store.invalidate(msg.key, msg.seq)


WORKED = {
    "tell_the_peers": drop,
    "remember_the_absent": tombstone,
    "newer_only": newer_values,
    "survive_loss": evict_and_track_gaps,
}


@pytest.mark.parametrize("name", list(WORKED))
def test_each_worked_answer_passes_its_challenge(name: str) -> None:
    assert CHALLENGES[name].grade(WORKED[name], shrink=False).passed


def test_each_challenge_needs_its_own_idea() -> None:
    names = list(CHALLENGES)
    assert names == list(WORKED)
    for earlier, later in itertools.pairwise(names):
        assert WORKED[earlier] is not WORKED[later]
        # the answer to the challenge before does not pass this one
        assert not CHALLENGES[later].grade(WORKED[earlier], shrink=False).passed


def test_the_worked_answers_in_the_notebook_differ() -> None:
    import nbformat

    from cachelab.lab import NOTEBOOKS

    notebook = nbformat.read(NOTEBOOKS / "08-challenges.ipynb", as_version=4)
    text = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    answers = [block.split("```")[0] for block in text.split("```python")[1:]]
    assert len(answers) == len(CHALLENGES) and len(set(answers)) == len(answers)


def typo(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """A student's typo: Message has no ``version``."""
    return store.invalidate(msg.key, msg.version)  # type: ignore[attr-defined]


def test_an_apply_that_raises_is_graded_in_one_line() -> None:
    grade = CHALLENGES["tell_the_peers"].grade(typo)
    assert not grade.passed and grade.outcomes == () and grade.counterexample is None
    assert grade.error.startswith("your apply raised AttributeError on message op='set' key=")
    assert "'Message' object has no attribute 'version'" in grade.error
    assert "\n" not in grade.error and "Traceback" not in str(grade)
    assert str(grade).splitlines()[1:] == ["  " + grade.error]
    assert grade.viewer() is None


def test_a_failing_grade_shows_its_counterexample_with_the_verdict() -> None:
    pytest.importorskip("anywidget")
    failed = CHALLENGES["tell_the_peers"].grade(silent)
    table, viewer = failed.parts()
    assert "FAIL" in table.data and viewer.panes[0]["title"] == "COUNTEREXAMPLE"
    passed = CHALLENGES["tell_the_peers"].grade(evict)
    assert len(passed.parts()) == 1


def test_a_message_the_answer_declined_is_ignored_not_outdated() -> None:
    pytest.importorskip("anywidget")
    grade = CHALLENGES["tell_the_peers"].grade(silent)
    heads = [row["head"] for row in grade.viewer().panes[0]["events"] if row["kind"] == "deliver"]
    assert any(head.endswith("(set:ignored)") for head in heads)
    assert not any("outdated" in head for head in heads)
    assert grade.counterexample is not None
    details = {e.detail for e in answer_trace(grade.counterexample.trace) if e.kind == "deliver"}
    assert "set:ignored" in details and "set:outdated" not in details
