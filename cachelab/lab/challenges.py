"""Challenges: write the safeguard yourself; the simulator runs it and the checker grades it.

Each challenge switches one of the library's safeguards off and asks for the same
protection in a strategy's ``apply(store, msg, memo)``: what a node does with a
peer's message. ``store`` is the node's LocalStore (``invalidate``, ``update``,
``flush``, ``known_version``), ``msg`` the decoded Message (``op``, ``key``, ``seq``,
``value``), ``memo`` a dict private to that node for the run. Return True when the
message changed something, False when it was ignored.

    from cachelab.lab.challenges import CHALLENGES
    grade = CHALLENGES["tell_the_peers"].grade(my_apply)
    grade.passed, grade            # a table per check; grade.viewer() animates the
                                   # shortest failing trace the grader could find

Every challenge is graded by the same scenarios as the lab (``cachelab.sim``), and
is itself tested: its reference answer, the library's own safeguard switched on,
must pass, and the safeguard switched off must fail.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cachelab.coherence import Invalidate, Strategy, Update
from cachelab.local import LocalStore
from cachelab.messages import Message
from cachelab.sim.engine import Simulation
from cachelab.sim.network import Network, Partition
from cachelab.sim.result import SimResult
from cachelab.sim.scenarios import METRICS, A, B, C
from cachelab.sim.workloads import Request, every, merge

Apply = Callable[[LocalStore, Message, dict[str, Any]], bool]
"""A student's answer: what a node does with a peer's message."""
Script = Callable[[], Iterable[Request]]
MAX_SHRINK_RUNS = 400
"""The most runs the grader spends shrinking a failing script to a short counterexample."""


class AnswerStrategy(Strategy):
    """A Strategy around an ``apply`` function, with one memo per node (its LocalStore)."""

    name = "answer"

    def __init__(self, apply: Apply, carries_value: bool) -> None:
        self._apply = apply
        self.carries_value = carries_value
        self._memos: dict[int, dict[str, Any]] = {}

    def apply(self, store: LocalStore, msg: Message) -> bool:
        """Hand the message to the answer, with this node's memo."""
        memo = self._memos.setdefault(id(store), {})
        return bool(self._apply(store, msg, memo))


@dataclass(frozen=True)
class Answer:
    """What gets graded: an ``apply`` and the node options it runs with."""

    apply: Apply
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = "your answer"


@dataclass(frozen=True)
class Check:
    """One scripted run and the bound its metric must stay within."""

    name: str
    script: Script = field(repr=False)
    options: Mapping[str, Any]
    metric: str
    bound: float

    def run(self, answer: Answer, carries_value: bool, script: Script | None = None) -> SimResult:
        """Run the script with the answer's strategy (a fresh one: memos start empty)."""
        strategy = AnswerStrategy(answer.apply, carries_value)
        options = {**self.options, **answer.options, "strategy": strategy}
        return Simulation(progress=False, **options).run(workload=(script or self.script)())

    def value(self, result: SimResult) -> float:
        """The metric of one run."""
        return float(result.metrics(0.05)[self.metric])


@dataclass(frozen=True)
class Outcome:
    """One check's result."""

    check: Check
    value: float
    result: SimResult

    @property
    def passed(self) -> bool:
        """Whether the metric stayed within the bound."""
        return self.value <= self.check.bound + 1e-9

    def row(self) -> tuple[str, str, str, str]:
        """``(check, metric, value, bound)`` in words."""
        metric = METRICS[self.check.metric]
        return (self.check.name, metric.label, metric.format(self.value),
                "≤ " + metric.format(self.check.bound))


@dataclass(frozen=True)
class Grade:
    """A challenge's verdict on an answer: each check, and a counterexample if one failed."""

    challenge: str
    answer: str
    outcomes: tuple[Outcome, ...]
    counterexample: SimResult | None

    @property
    def passed(self) -> bool:
        """Every check passed."""
        return all(o.passed for o in self.outcomes)

    def __str__(self) -> str:
        lines = [f"{self.challenge}: {self.answer}: {'PASS' if self.passed else 'FAIL'}"]
        for o in self.outcomes:
            name, metric, value, bound = o.row()
            lines.append(f"  {'ok  ' if o.passed else 'FAIL'} {name}: {metric} {value} ({bound})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = f"<b>{html.escape(self.challenge)}</b>: {html.escape(self.answer)}: "
        verdict = '<b style="color:#17622d">PASS</b>' if self.passed else (
            '<b style="color:#8f1414">FAIL</b>')
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in o.row())
            + f"<td>{'✓' if o.passed else '✗'}</td></tr>"
            for o in self.outcomes
        )
        table = ("<table><tr><th>check</th><th>metric</th><th>value</th><th>bound</th><th></th>"
                 f"</tr>{rows}</table>")
        return f'<div class="cachelab-grade">{head}{verdict}{table}</div>'

    def viewer(self) -> Any:
        """The shortest failing run the grader found, in the trace viewer (None if passed)."""
        if self.counterexample is None:
            return None
        from cachelab.lab.viz.timeline import pane
        from cachelab.lab.viz.viewer import TraceViewer

        result = self.counterexample
        failed = next(o for o in self.outcomes if not o.passed)
        words = f"{failed.check.name}: {failed.row()[1]} {failed.row()[2]} ({failed.row()[3]})"
        viewer = TraceViewer()
        viewer.show([pane(result.trace, nodes=result.nodes, carries_value=result.carries_value,
                          title="COUNTEREXAMPLE", verdict=words, ok=False)])
        return viewer


@dataclass(frozen=True)
class Challenge:
    """A safeguard switched off, a brief, the checks, and the library's own answer."""

    name: str
    title: str
    brief: str
    checks: tuple[Check, ...]
    reference: Answer
    switched_off: Answer
    carries_value: bool = False

    def grade(self, answer: Apply | Answer, *, shrink: bool = True) -> Grade:
        """Run every check with ``answer``; shrink the first failure to a short trace."""
        given = answer if isinstance(answer, Answer) else Answer(answer, label=_name(answer))
        outcomes = []
        for check in self.checks:
            result = check.run(given, self.carries_value)
            outcomes.append(Outcome(check, check.value(result), result))
        failed = next((o for o in outcomes if not o.passed), None)
        example = None
        if failed is not None:
            example = self._shrunk(failed, given) if shrink else failed.result
        return Grade(self.title, given.label, tuple(outcomes), example)

    def _shrunk(self, failed: Outcome, answer: Answer) -> SimResult:
        """The failing check's run on the shortest script that still fails it."""
        check = failed.check
        requests = shrink(list(check.script()), lambda r: _fails(check, answer, self, r))
        return check.run(answer, self.carries_value, lambda: requests)


def _fails(check: Check, answer: Answer, challenge: Challenge, requests: list[Request]) -> bool:
    """Whether ``check`` fails on this script."""
    result = check.run(answer, challenge.carries_value, lambda: requests)
    return check.value(result) > check.bound + 1e-9


def shrink(
    items: Sequence[Request], fails: Callable[[list[Request]], bool], budget: int = MAX_SHRINK_RUNS
) -> list[Request]:
    """Delta debugging: drop chunks of requests while the check still fails."""
    current, chunks, runs = list(items), 2, 0
    while len(current) >= 2 and runs < budget:
        size = max(1, len(current) // chunks)
        for start in range(0, len(current), size):
            trial = current[:start] + current[start + size:]
            runs += 1
            if trial and fails(trial):
                current, chunks = trial, max(chunks - 1, 2)
                break
            if runs >= budget:
                break
        else:
            if size == 1:
                break
            chunks = min(chunks * 2, len(current))
    return current


def _name(apply: Apply) -> str:
    """An answer's name: its function's."""
    return getattr(apply, "__name__", "your answer")


# -- the library's own answers, written as a student would -------------------------------


def silent(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Ignore every message: the cache that is never told (the starting point)."""
    return False


def evict(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """The library's invalidation: drop the key, and remember the version (a tombstone)."""
    return Invalidate().apply(store, msg)


def replace(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """The library's update strategy: take the new value (ordering is the store's)."""
    return Update().apply(store, msg)


def evict_and_track_gaps(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Invalidate, and flush when a sequence number was skipped (gap detection by hand)."""
    last = memo.get("last", 0)
    if last and msg.seq > last + 1:
        store.flush()
    memo["last"] = max(last, msg.seq)
    return evict(store, msg, memo)


# -- the checks ---------------------------------------------------------------------


def _polls(nodes: Sequence[int], key: str, start: float, end: float) -> list[Iterable[Request]]:
    """Every node in ``nodes`` reads ``key`` every 50 ms."""
    return [every(0.05, start + n * 0.01, end, n, "read", key) for n in nodes]


def _propagation() -> Iterable[Request]:
    """a writes k every 200 ms; b and c poll it every 50 ms."""
    return merge(every(0.2, 0.0, 1.0, A, "write", "k"), *_polls((B, C), "k", 0.03, 1.0))


def _stale_set() -> Iterable[Request]:
    """b starts a 50 ms read of k; a writes k meanwhile; b keeps polling (as in the catalogue)."""
    script = [Request(0.0, A, "write", "k"), Request(0.1, B, "read", "k", latency=0.05),
              Request(0.11, A, "write", "k")]
    return merge(script, every(0.05, 0.2, 1.0, B, "read", "k"))


def _two_writers() -> Iterable[Request]:
    """a and b write k 1 ms apart every 100 ms; everyone reads once all is quiet."""
    rounds = []
    for r in range(10):
        t = r * 0.1
        rounds += [Request(t, A, "write", "k"), Request(t + 0.001, B, "write", "k")]
        rounds += [Request(t + 0.05 + n * 0.001, n, "read", "k") for n in (A, B, C)]
    return rounds


def _lossy() -> Iterable[Request]:
    """a writes one of ten keys every 20 ms; b and c poll all ten every 10 ms."""
    keys = [f"k{i}" for i in range(10)]
    writes = [Request(i * 0.02, A, "write", keys[i % 10]) for i in range(100)]
    reads = [Request(0.005 + i * 0.01, n, "read", keys[i % 10]) for i in range(200) for n in (B, C)]
    return merge(writes, reads)


def _cut() -> Iterable[Request]:
    """b caches k, misses a write of k while cut off, then a writes x; b polls k."""
    script = [Request(0.0, A, "write", "k"), Request(1.1, A, "write", "k"),
              Request(2.0, A, "write", "x")]
    return merge(script, every(0.05, 0.5, 3.0, B, "read", "k"))


_SHAKY = Network(delay=0.002, jitter=0.001, duplicate=0.3, reorder=0.3, reorder_delay=0.02)
_LOSSY = Network(delay=0.002, loss=0.1)
_CUT = Network(partitions=(Partition(B, 1.0, 1.2),))
_NO_GAPS = MappingProxyType({"gap_detection": False, "reconnect_flush": False})


def _check(name: str, script: Script, metric: str, bound: float, **options: Any) -> Check:
    """A check with its Simulation options."""
    return Check(name, script, MappingProxyType(options), metric, bound)


CHALLENGES: dict[str, Challenge] = {
    c.name: c
    for c in (
        Challenge(
            "tell_the_peers",
            "1 · Tell the peers",
            "Nodes cache what they read; a write publishes a message to every node. Write "
            "apply() so that a node stops serving a key that another node changed. Passing: "
            "no read is stale by more than the message delay, and concurrent writers agree.",
            (
                _check("propagation", _propagation, "staleness_max", 0.01, nodes=3),
                _check("two writers", _two_writers, "stale_reads", 0.0, nodes=3,
                       network=Network(delay=0.005)),
            ),
            Answer(evict, label="the library's invalidation"),
            Answer(silent, label="no invalidation (silent)"),
        ),
        Challenge(
            "remember_the_absent",
            "2 · The stale set",
            "The fill guard is off (fill_guard=False). Node b starts a slow read of k; a "
            "writes k, and b hears of it while its read is still in flight, with nothing "
            "to drop. Then the slow reply lands and b caches the old value. Write apply() "
            "so that the late fill is refused. Hint: the store keeps tombstones (a minimum "
            "version per key), and a fill older than a key's tombstone is refused.",
            (
                _check("stale set", _stale_set, "stale_reads", 0.0, nodes=2, fill_guard=False),
                _check("propagation", _propagation, "staleness_max", 0.01, nodes=3,
                       fill_guard=False),
            ),
            Answer(evict, {"fill_guard": True, "tombstones": False},
                   label="the library's fill guard"),
            Answer(evict, {"tombstones": False}, label="fill guard and tombstones off"),
        ),
        Challenge(
            "newer_only",
            "3 · Newer news only",
            "Messages now carry the new value (the update strategy) and arrive late, out of "
            "order and twice: the store's ordering check is off (ordering=False). Write "
            "apply() so that an older or repeated message never overwrites a newer value.",
            (
                _check("reordered", lambda: _two_writers(), "stale_reads", 0.0, nodes=3,
                       network=_SHAKY, seed=5, ordering=False),
                _check("two writers", _two_writers, "stale_reads", 0.0, nodes=3,
                       network=Network(delay=0.005), ordering=False),
            ),
            Answer(replace, {"ordering": True}, label="the library's ordering"),
            Answer(replace, label="ordering off"),
            carries_value=True,
        ),
        Challenge(
            "survive_loss",
            "4 · Surviving loss",
            "Pub/Sub is at most once: 10 % of messages are lost, and b is cut off silently "
            "for 200 ms. Gap detection and the reconnect flush are off. Every message "
            "carries the global sequence number (msg.seq): write apply() so that a node "
            "that missed a message stops trusting its cache. Passing: no read is stale for "
            "longer than it takes the next message to arrive.",
            (
                _check("10 % loss", _lossy, "staleness_max", 0.05, nodes=3, network=_LOSSY,
                       **_NO_GAPS),
                _check("silent cut", _cut, "staleness_max", 0.95, nodes=2, network=_CUT,
                       **_NO_GAPS),
            ),
            Answer(evict, {"gap_detection": True}, label="the library's gap detection"),
            Answer(evict, label="gap detection off"),
        ),
    )
}
"""The challenges, in the order of the notebook."""
