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
must pass, and the safeguard switched off must fail. A safeguard is also judged by what
it costs: each challenge's ``cost`` check allows at most 1.5 times the Redis reads of the
library's answer, so ``store.flush(); return True``, safe and useless, fails. An answer
that raises is graded in one line, naming the exception and the message.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cachelab.coherence import Invalidate, Strategy, Update
from cachelab.errors import CachelabError
from cachelab.local import LocalStore
from cachelab.messages import NO_VALUE, Message
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
COST_SLACK = 1.5
"""A cost check's bound: this many times the library's answer's value on the same run."""


class AnswerRaised(CachelabError, RuntimeError):
    """The student's ``apply`` raised: carries the one line the grade shows instead."""

    def __init__(self, error: Exception, msg: Message) -> None:
        super().__init__(f"your apply raised {type(error).__name__} on message "
                         f"{describe(msg)}: {error}")


def describe(msg: Message) -> str:
    """A message in one line: ``op='set' key='k' seq=2``, with its value if it carries one."""
    words = f"op={msg.op!r} key={msg.key!r} seq={msg.seq}"
    return words if msg.value is NO_VALUE else f"{words} value={msg.value!r}"


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
        try:
            return bool(self._apply(store, msg, memo))
        except Exception as error:  # a student's typo: one line, not the library's frames
            raise AnswerRaised(error, msg) from None


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
    relative: bool = False
    """When set, ``bound`` is a multiple of the library's answer's value on this check."""

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
    bound: float
    reference: SimResult | None = None
    """The library's answer's run, for a check whose bound is relative to it."""

    @property
    def passed(self) -> bool:
        """Whether the metric stayed within the bound."""
        return self.value <= self.bound + 1e-9

    def row(self) -> tuple[str, str, str, str]:
        """``(check, metric, value, bound)`` in words."""
        metric = METRICS[self.check.metric]
        bound = "≤ " + metric.format(self.bound)
        if self.reference is not None:
            library = metric.format(self.check.value(self.reference))
            bound += f" ({COST_SLACK:g} times the library's {library})"
        return (self.check.name, metric.label, metric.format(self.value), bound)

    def why(self) -> str:
        """Why a failed cost check failed, in words ("" when it passed or is not a cost)."""
        if self.passed or self.reference is None:
            return ""
        metric, ref = METRICS[self.check.metric], self.check.value(self.reference)
        mine, theirs = self.result.report.hit_rate, self.reference.report.hit_rate
        return (f"too costly: {metric.format(self.value)} {metric.label} where the library's "
                f"answer needs {metric.format(ref)} (hit rate {mine:.0%} against {theirs:.0%}). "
                "Your apply throws away entries the library's answer keeps: flushing "
                "everything is safe, but every entry flushed is paid for in reloads.")


@dataclass(frozen=True)
class Grade:
    """A challenge's verdict on an answer: each check, and a counterexample if one failed."""

    challenge: str
    answer: str
    outcomes: tuple[Outcome, ...]
    counterexample: SimResult | None
    error: str = ""
    """The one line shown when the answer raised (then there are no outcomes)."""

    @property
    def passed(self) -> bool:
        """Every check passed, and the answer never raised."""
        return not self.error and all(o.passed for o in self.outcomes)

    def notes(self) -> list[str]:
        """The lines that say why it failed beyond the table: an error, a cost."""
        return [self.error] if self.error else [o.why() for o in self.outcomes if o.why()]

    def __str__(self) -> str:
        lines = [f"{self.challenge}: {self.answer}: {'PASS' if self.passed else 'FAIL'}"]
        for o in self.outcomes:
            name, metric, value, bound = o.row()
            lines.append(f"  {'ok  ' if o.passed else 'FAIL'} {name}: {metric} {value} ({bound})")
        lines += [f"  {note}" for note in self.notes()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = f"<b>{html.escape(self.challenge)}</b>: {html.escape(self.answer)}: "
        verdict = '<b style="color:#17622d">PASS</b>' if self.passed else (
            '<b style="color:#8f1414">FAIL</b>')
        notes = "".join(f"<p>{html.escape(note)}</p>" for note in self.notes())
        if not self.outcomes:
            return f'<div class="cachelab-grade">{head}{verdict}{notes}</div>'
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in o.row())
            + f"<td>{'✓' if o.passed else '✗'}</td></tr>"
            for o in self.outcomes
        )
        table = ("<table><tr><th>check</th><th>metric</th><th>value</th><th>bound</th><th></th>"
                 f"</tr>{rows}</table>")
        return f'<div class="cachelab-grade">{head}{verdict}{table}{notes}</div>'

    def parts(self) -> list[Any]:
        """What a notebook shows: the table, then the counterexample's viewer if it failed."""
        viewer = self.viewer()
        return [_Table(self._repr_html_())] + ([] if viewer is None else [viewer])

    def _ipython_display_(self) -> None:
        """Show the counterexample with the verdict, so a failing cell explains itself."""
        from IPython import display as ipython

        show: Callable[..., None] = ipython.display
        show(*self.parts())

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
        viewer.show([pane(answer_trace(result.trace), nodes=result.nodes,
                          carries_value=result.carries_value, title="COUNTEREXAMPLE",
                          verdict=words, ok=False)])
        return viewer


@dataclass(frozen=True)
class _Table:
    """A grade's table, displayed as HTML on its own."""

    data: str

    def _repr_html_(self) -> str:
        return self.data


def answer_trace(trace: Iterable[Any]) -> list[Any]:
    """The trace in the answer's words: a message its apply declined is ``ignored``.

    The node calls any declined message outdated, which for the library's strategies means
    "a newer version was known"; a student's apply may decline for any reason, or none.
    """
    return [e._replace(detail=e.detail.replace(":outdated", ":ignored"))
            if e.kind == "deliver" and e.detail.endswith(":outdated") else e for e in trace]


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
        try:
            outcomes = tuple(self._outcome(check, given) for check in self.checks)
        except AnswerRaised as raised:
            return Grade(self.title, given.label, (), None, str(raised))
        failed = next((o for o in outcomes if not o.passed), None)
        example = None
        if failed is not None:  # a cost's bound holds for the whole run: show it whole
            relative = failed.reference is not None
            example = self._shrunk(failed, given) if shrink and not relative else failed.result
        return Grade(self.title, given.label, outcomes, example)

    def _outcome(self, check: Check, answer: Answer) -> Outcome:
        """Run one check; a relative bound is scaled by the library's answer on the same run."""
        result = check.run(answer, self.carries_value)
        if not check.relative:
            return Outcome(check, check.value(result), result, check.bound)
        reference = self._reference_run(check)
        bound = check.bound * check.value(reference)
        return Outcome(check, check.value(result), result, bound, reference)

    def _reference_run(self, check: Check) -> SimResult:
        """The library's answer on ``check`` (runs are deterministic: computed once)."""
        key = (self.name, check.name)
        if key not in _REFERENCE_RUNS:
            _REFERENCE_RUNS[key] = check.run(self.reference, self.carries_value)
        return _REFERENCE_RUNS[key]

    def _shrunk(self, failed: Outcome, answer: Answer) -> SimResult:
        """The failing check's run on the shortest script that still fails it."""
        check, bound = failed.check, failed.bound
        requests = shrink(list(check.script()), lambda r: _fails(check, bound, answer, self, r))
        return check.run(answer, self.carries_value, lambda: requests)


_REFERENCE_RUNS: dict[tuple[str, str], SimResult] = {}


def _fails(
    check: Check, bound: float, answer: Answer, challenge: Challenge, requests: list[Request]
) -> bool:
    """Whether ``check`` fails on this script (an answer that raises on it fails it)."""
    try:
        result = check.run(answer, challenge.carries_value, lambda: requests)
    except AnswerRaised:
        return True
    return check.value(result) > bound + 1e-9


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


def drop(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Drop the key the message is about, and nothing else (challenge 1's worked answer)."""
    store.discard(msg.key)
    return True


def flush_everything(store: LocalStore, msg: Message, memo: dict[str, Any]) -> bool:
    """Safe and useless: forget the whole cache on every message (the cost checks' target)."""
    store.flush()
    return True


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


def _many_keys() -> Iterable[Request]:
    """a writes one of ten keys every 50 ms; b and c read all ten, one every 10 ms."""
    keys = [f"k{i}" for i in range(10)]
    writes = [Request(0.005 + i * 0.05, A, "write", keys[i % 10]) for i in range(20)]
    reads = [Request(0.01 + i * 0.01, n, "read", keys[i % 10]) for i in range(100) for n in (B, C)]
    return merge(writes, reads)


_SHAKY = Network(delay=0.002, jitter=0.001, duplicate=0.3, reorder=0.3, reorder_delay=0.02)
_LOSSY = Network(delay=0.002, loss=0.1)
_CUT = Network(partitions=(Partition(B, 1.0, 1.2),))
_NO_GAPS = MappingProxyType({"gap_detection": False, "reconnect_flush": False})


def _check(name: str, script: Script, metric: str, bound: float, **options: Any) -> Check:
    """A check with its Simulation options."""
    return Check(name, script, MappingProxyType(options), metric, bound)


def _cost(**options: Any) -> Check:
    """What the safeguard costs on ten keys: Redis reads, against the library's answer's."""
    return Check("cost", _many_keys, MappingProxyType({"nodes": 3, **options}), "store_reads",
                 COST_SLACK, relative=True)


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
                _cost(),
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
                _cost(fill_guard=False),
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
                _cost(ordering=False),
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
                _cost(**_NO_GAPS),
            ),
            Answer(evict, {"gap_detection": True}, label="the library's gap detection"),
            Answer(evict, label="gap detection off"),
        ),
    )
}
"""The challenges, in the order of the notebook."""
