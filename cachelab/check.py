"""The consistency checker: a history in, stale reads, staleness and nines out.

Definitions (every comparison of times is strict, as in linearizability checkers):

* A write is an op ``"write"``, ``"delete"`` or ``"invalidate"``; each establishes its
  ``version`` as the key's newest version at its ``end``. A read is an op ``"read"``.
* Write W *precedes* read R when ``W.end < R.start``. Ops whose intervals overlap or
  merely touch (``W.end == R.start``) are concurrent, and a concurrent write never makes
  a read stale.
* A read is **stale** when some write of its key that precedes it has a greater
  version than the one the read returned. Its **staleness** is ``R.start`` minus the end
  of the earliest-completing such write. Staleness is therefore always > 0.
* **nines** is ``-log10(stale_fraction)``; it is ``math.inf`` when no read is stale,
  including when there are no reads at all (then ``stale_fraction`` is 0.0).
* **Reflected within M** (Polaris): write W of key k is reflected within M seconds when
  no read of k, on any node, that starts at or after ``W.end + M`` returns a version
  older than ``W.version``. Reading a newer version counts as reflecting W, so a
  superseded write is judged by the same rule, over all later reads: a read that misses
  both W1 and its superseder W2 counts against both, because neither change was visible
  to it. A write followed by no reads of its key is reflected. With no writes the share
  is 1.0. Windows must be > 0. Computed as each write's *lag* (latest start of a read of
  an older version, minus ``W.end``; 0 if none): reflected within M iff lag < M.
* **Monotonic-read violation**: a read returns a version older than that of a read of the
  same key on the same node that ended before it started. **Read-your-writes
  violation**: likewise against a write of the key by the same node.
* **Hit rate** is hits / reads (0.0 with no reads). **Store load** counts store accesses
  (reads with ``hit=False`` and all writes) by their start time in fixed windows
  ``[i * store_window, (i + 1) * store_window)``; the peak rate is the peak count / window.
* Staleness percentiles are nearest-rank over the stale reads, 0.0 when there are none.
* **Clock uncertainty** (``offset``, seconds, default 0): when the ops come from clocks
  that may disagree by up to ``offset`` (processes on several machines), a write precedes
  a read on another node only when ``W.end + offset < R.start``, and a read counts against
  a write's reflection only from ``W.end + M + offset``. Same-node comparisons (monotonic
  reads, read-your-writes) share one clock and ignore it. At 0 every rule above is exact.

Published anchors, each with its source, are in ``ANCHORS``. (An earlier version cited
"four 9s of invalidations within 1 s" for memcache; no source for it was found, so it is
gone.)
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from html import escape
from itertools import accumulate
from operator import attrgetter
from typing import Any

from cachelab.history import DELETE, INVALIDATE, READ, WRITE, Op

WRITE_OPS = frozenset({WRITE, DELETE, INVALIDATE})
WINDOWS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
"""Default Polaris windows, in seconds."""
STALENESS_EDGES: tuple[float, ...] = (0.0, *(10.0**e for e in range(-6, 3)), math.inf)
"""Histogram bucket edges in seconds: 0, 1 us, 10 us, ..., 100 s, inf (bucket = [lo, hi))."""
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p999", 0.999),
)
TAO_NINES = 10.0
"""Meta TAO: 10 nines of cache consistency (see ``TAO_SOURCE``)."""
TAO_SOURCE = 'Meta, "Cache made consistent" (2022)'
ANCHORS: tuple[str, ...] = (
    'Meta, "Cache made consistent" (2022): TAO went from 6 to 10 nines of cache '
    "consistency, measured by Polaris.",
    'Facebook, "Scaling Memcache at Facebook" (NSDI \'13): leases cut the peak database '
    "query rate from 17K/s to 1.3K/s.",
    'Facebook, "Existential Consistency" (SOSP \'15): 0.0004% of reads to vertices would '
    "return a different result under linearizability.",
    "Uber CacheFront (2025): over 150M reads/s, with TTLs up to 24 h.",
)
"""Published figures the lab may cite, each with its source."""
SMALL_RUN = 1000
"""Below this many reads a report leaves out nines, store load and the published anchor:
on a handful of reads they mean nothing."""


@dataclass(frozen=True)
class Report:
    """What one run's history says about consistency, hit rate and store load."""

    reads: int
    writes: int
    stale_reads: int
    stale_fraction: float
    nines: float
    staleness_p50: float
    staleness_p90: float
    staleness_p99: float
    staleness_p999: float
    staleness_max: float
    staleness_edges: tuple[float, ...]
    staleness_counts: tuple[int, ...]
    reflected: tuple[tuple[float, float], ...]
    monotonic_read_violations: int
    read_your_writes_violations: int
    hits: int
    hit_rate: float
    nodes: int
    messages: int | None
    messages_per_write: float | None
    store_window: float
    peak_store_ops: int
    peak_store_rate: float

    def to_dict(self) -> dict[str, Any]:
        """A flat dict (one scalar per key) for a pandas row."""
        flat = asdict(self)
        edges, counts = flat.pop("staleness_edges"), flat.pop("staleness_counts")
        for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=True):
            flat[f"staleness_hist_{lo:g}_{hi:g}"] = count
        for window, share in flat.pop("reflected"):
            flat[f"reflected_within_{window:g}s"] = share
        return flat

    def __str__(self) -> str:
        return "\n".join(
            [
                f"consistency report: {self.reads} reads, {self.writes} writes, {self.nodes} nodes",
                f"  stale reads       {self.stale_reads} (fraction {self.stale_fraction:.6g}, "
                f"{_nines_text(self.nines)}; {TAO_SOURCE}: TAO at {TAO_NINES:g} nines)",
                f"  staleness         {self._percentiles_text()}",
                f"  histogram         {self._histogram_text()}",
                f"  reflected within  {self._reflected_text()}",
                f"  session           {self.monotonic_read_violations} monotonic-read, "
                f"{self.read_your_writes_violations} read-your-writes violations",
                f"  hit rate          {self.hit_rate:.2%} ({self.hits} of {self.reads} reads)",
                f"  messages          {self._messages_text()}",
                f"  store load        peak {self.peak_store_ops} ops in a "
                f"{_seconds(self.store_window)} window ({self.peak_store_rate:.6g}/s)",
            ]
        )

    def _repr_html_(self) -> str:
        """A compact table; lines that mean nothing for a small run are left out."""
        rows = [("stale reads", self._stale_html())]
        big = self.reads >= SMALL_RUN
        if big:
            rows.append(("nines", _nines_text(self.nines)))
        if self.stale_reads:
            rows.append(("staleness", self._percentiles_text(big)))
        rows.append(("reflected within", self._reflected_html()))
        violations = self.monotonic_read_violations + self.read_your_writes_violations
        if violations:
            rows.append(("session", f"{self.monotonic_read_violations} monotonic-read, "
                         f"{self.read_your_writes_violations} read-your-writes violations"))
        rows.append(("hit rate", f"{_percent(self.hit_rate)} ({self.hits} of {self.reads})"))
        if self.messages is not None:
            rows.append(("messages", self._messages_text()))
        if big:
            rows.append(("store load", f"peak {self.peak_store_ops} ops in "
                         f"{_seconds(self.store_window)} ({self.peak_store_rate:,.0f}/s)"))
        return _html_table(f"{self.reads} reads, {self.writes} writes, {self.nodes} nodes", rows,
                           f"For scale: {ANCHORS[0]}" if big else "")

    def _stale_html(self) -> str:
        """``2 of 9 reads (22.2%)``."""
        return f"{self.stale_reads} of {self.reads} reads ({_percent(self.stale_fraction)})"

    def _reflected_html(self) -> str:
        """Each window's share of reflected writes, percent only."""
        return " · ".join(f"{_seconds(m)}: {_percent(share)}" for m, share in self.reflected)

    def _percentiles_text(self, all_of_them: bool = True) -> str:
        """p50 .. max of the staleness of stale reads (p50 and max only, when few)."""
        names = [name for name, _ in PERCENTILES] + ["max"] if all_of_them else ["p50", "max"]
        return "  ".join(f"{n} {_seconds(getattr(self, f'staleness_{n}'))}" for n in names)

    def _histogram_text(self) -> str:
        """Non-empty buckets as ``[lo, hi): count``."""
        edges, counts = self.staleness_edges, self.staleness_counts
        cells = [
            f"[{_seconds(lo)}, {_seconds(hi)}): {n}"
            for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)
            if n
        ]
        return "  ".join(cells) or "(no stale reads)"

    def _reflected_text(self) -> str:
        """Each window's share of reflected writes, with its nines."""
        return "  ".join(
            f"{_seconds(m)}: {share * 100:.6g}% ({_nines_text(_nines(1.0 - share))})"
            for m, share in self.reflected
        )

    def _messages_text(self) -> str:
        """Messages delivered, and per write, when known."""
        if self.messages is None:
            return "not counted"
        per_write = "n/a" if self.messages_per_write is None else f"{self.messages_per_write:.3g}"
        return f"{self.messages} delivered, {per_write} per write"


def check(
    history: Iterable[Op],
    *,
    windows: Sequence[float] = WINDOWS,
    store_window: float = 0.1,
    messages: int | None = None,
    nodes: int | None = None,
    edges: Sequence[float] = STALENESS_EDGES,
    offset: float = 0.0,
) -> Report:
    """Measure a history (any order); ``nodes`` defaults to the distinct nodes seen.

    ``offset`` is the clock uncertainty in seconds (see the module's notes): a write
    counts as completed before a read only when ``W.end + offset < R.start``.
    """
    ops = _validated(history, windows, store_window, offset)
    reads = [op for op in ops if op.op == READ]
    writes = [op for op in ops if op.op in WRITE_OPS]
    by_key, by_node_key = _split(ops, _BY_KEY), _split(ops, _BY_NODE_KEY)
    staleness = sorted(s for _, s in _stale_reads(by_key, offset))
    fraction = len(staleness) / len(reads) if reads else 0.0
    hits = sum(op.hit for op in reads)
    peak = _peak_store_ops(ops, store_window)
    return Report(
        reads=len(reads),
        writes=len(writes),
        stale_reads=len(staleness),
        stale_fraction=fraction,
        nines=_nines(fraction),
        **_staleness_percentiles(staleness),
        staleness_edges=tuple(edges),
        staleness_counts=histogram(staleness, edges),
        reflected=_shares(_reflection_lags(by_key, offset), windows),
        monotonic_read_violations=_monotonic_read_violations(by_node_key),
        read_your_writes_violations=_read_your_writes_violations(by_node_key),
        hits=hits,
        hit_rate=hits / len(reads) if reads else 0.0,
        nodes=len({op.node for op in ops}) if nodes is None else nodes,
        messages=messages,
        messages_per_write=messages / len(writes) if messages is not None and writes else None,
        store_window=store_window,
        peak_store_ops=peak,
        peak_store_rate=peak / store_window,
    )


def stale_reads(history: Iterable[Op], offset: float = 0.0) -> list[tuple[Op, float]]:
    """Every stale read with its staleness, grouped by key (``offset``: clock uncertainty)."""
    return _stale_reads(_split(history, _BY_KEY), _offset(offset))


def monotonic_read_violations(history: Iterable[Op]) -> int:
    """Reads older than an earlier read (ended before this one started) on the same node."""
    return _monotonic_read_violations(_split(history, _BY_NODE_KEY))


def read_your_writes_violations(history: Iterable[Op]) -> int:
    """Reads older than a write of that key the same node completed before the read."""
    return _read_your_writes_violations(_split(history, _BY_NODE_KEY))


def reflection_lags(history: Iterable[Op]) -> list[tuple[Op, float]]:
    """Each write with its lag: latest start of a read older than it, minus its end (or 0)."""
    return _reflection_lags(_split(history, _BY_KEY))


def reflected_shares(
    history: Iterable[Op], windows: Sequence[float] = WINDOWS
) -> tuple[tuple[float, float], ...]:
    """For each window M, the share of writes reflected within M (lag < M); 1.0 if none."""
    return _shares(_reflection_lags(_split(history, _BY_KEY)), windows)


def histogram(values: Iterable[float], edges: Sequence[float] = STALENESS_EDGES) -> tuple[int, ...]:
    """Counts per bucket ``[edges[i], edges[i+1])``; values outside all buckets are dropped."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        i = bisect_right(edges, value) - 1
        if 0 <= i < len(counts):
            counts[i] += 1
    return tuple(counts)


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 1) of sorted values; 0.0 when there are none."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(round(q * len(ordered), 9)) - 1)]


_BY_KEY = attrgetter("key")
_BY_NODE_KEY = attrgetter("node", "key")
Groups = dict[Any, list[Op]]
"""Ops grouped by key, or by (node, key)."""


def _split(history: Iterable[Op], by: Callable[[Op], Any]) -> tuple[Groups, Groups]:
    """Reads and writes, each grouped by ``by(op)``."""
    reads: Groups = defaultdict(list)
    writes: Groups = defaultdict(list)
    for op in history:
        if op.op == READ:
            reads[by(op)].append(op)
        elif op.op in WRITE_OPS:
            writes[by(op)].append(op)
    return reads, writes


def _stale_reads(by_key: tuple[Groups, Groups], offset: float = 0.0) -> list[tuple[Op, float]]:
    reads, writes = by_key
    return [
        found for k, rs in reads.items() if k in writes for found in _older(rs, writes[k], offset)
    ]


def _monotonic_read_violations(by_node_key: tuple[Groups, Groups]) -> int:
    return sum(len(_older(rs, rs)) for rs in by_node_key[0].values())


def _read_your_writes_violations(by_node_key: tuple[Groups, Groups]) -> int:
    reads, writes = by_node_key
    return sum(len(_older(rs, writes[nk])) for nk, rs in reads.items() if nk in writes)


def _reflection_lags(by_key: tuple[Groups, Groups], offset: float = 0.0) -> list[tuple[Op, float]]:
    reads, writes = by_key
    return [lag for k, ws in writes.items() for lag in _lags(ws, reads.get(k, []), offset)]


def _shares(
    lags: list[tuple[Op, float]], windows: Sequence[float]
) -> tuple[tuple[float, float], ...]:
    ordered = sorted(lag for _, lag in lags)
    return tuple((m, bisect_left(ordered, m) / len(ordered) if ordered else 1.0) for m in windows)


def _older(reads: list[Op], ops: list[Op], offset: float = 0.0) -> list[tuple[Op, float]]:
    """Reads older than an op that ended (by more than ``offset``) before they started, with
    R.start - first newer end."""
    ordered = sorted(ops, key=attrgetter("end"))
    ends = [op.end + offset for op in ordered] if offset else [op.end for op in ordered]
    newest = list(accumulate((op.version for op in ordered), max))
    found = []
    for read in reads:
        i = bisect_left(ends, read.start)
        if i and newest[i - 1] > read.version:
            first = ordered[bisect_right(newest, read.version)]
            found.append((read, read.start - first.end))
    return found


def _lags(writes: list[Op], reads: list[Op], offset: float = 0.0) -> list[tuple[Op, float]]:
    """Each write's lag: latest start of a read of an older version, minus the write's end
    (and minus ``offset``, the clock uncertainty)."""
    ordered = sorted(reads, key=attrgetter("version"))
    versions = [op.version for op in ordered]
    latest = list(accumulate((op.start for op in ordered), max))
    lags = []
    for write in writes:
        i = bisect_left(versions, write.version)
        lags.append((write, max(0.0, latest[i - 1] - write.end - offset) if i else 0.0))
    return lags


def _validated(
    history: Iterable[Op], windows: Sequence[float], store_window: float, offset: float = 0.0
) -> list[Op]:
    """The history as a list, after checking ops and parameters."""
    _offset(offset)
    ops = list(history)
    unknown = {op.op for op in ops} - WRITE_OPS - {READ}
    if unknown:
        raise ValueError(f"unknown op kinds: {sorted(unknown)}")
    if any(m <= 0 for m in windows) or store_window <= 0:
        raise ValueError("windows and store_window must be > 0 seconds")
    return ops


def _offset(offset: float) -> float:
    """A checked clock uncertainty: a finite number of seconds, >= 0."""
    if isinstance(offset, bool) or not isinstance(offset, (int, float)):
        raise TypeError(f"offset must be a number of seconds, not {type(offset).__name__}")
    if not 0 <= offset < math.inf:
        raise ValueError(f"offset (clock uncertainty) must be finite seconds >= 0, not {offset}")
    return float(offset)


def _staleness_percentiles(ordered: Sequence[float]) -> dict[str, float]:
    """The ``staleness_*`` fields of a Report from sorted staleness values."""
    fields = {f"staleness_{name}": percentile(ordered, q) for name, q in PERCENTILES}
    return {**fields, "staleness_max": ordered[-1] if ordered else 0.0}


def _peak_store_ops(ops: Iterable[Op], window: float) -> int:
    """Most store accesses (misses and writes, by start time) in one fixed window."""
    counts = Counter(math.floor(op.start / window) for op in ops if op.op != READ or not op.hit)
    return max(counts.values(), default=0)


def _nines(fraction: float) -> float:
    """-log10 of a failure fraction; inf for 0."""
    return math.inf if fraction <= 0 else 0.0 - math.log10(fraction)


def _percent(share: float) -> str:
    """A share with three significant digits: ``22.2%``, ``0.0989%``, ``100%``."""
    return "0%" if share == 0 else f"{share * 100:.3g}%"


def _html_table(caption: str, rows: Sequence[tuple[str, str]], note: str) -> str:
    """A small two-column table with a caption and an optional footnote."""
    body = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{escape(k)}</th>'
        f'<td style="text-align:left">{escape(v)}</td></tr>'
        for k, v in rows
    )
    foot = f'<p style="font-size:smaller;margin:2px 0">{escape(note)}</p>' if note else ""
    return (
        '<div class="cachelab-report"><table style="border-collapse:collapse">'
        f'<caption style="text-align:left;font-weight:bold">consistency report: '
        f"{escape(caption)}</caption>{body}</table>{foot}</div>"
    )


def _nines_text(nines: float) -> str:
    return "no failures (inf nines)" if math.isinf(nines) else f"{nines:.2f} nines"


def _seconds(value: float) -> str:
    """A duration with a readable unit: 0, 3us, 1.5ms, 2s, inf."""
    if value == 0 or math.isinf(value):
        return "0" if value == 0 else "inf"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value * 1e9:.3g}ns"
