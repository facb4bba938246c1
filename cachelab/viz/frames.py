"""Turn a trace of events into animation frames: what every cache holds, what is in flight.

A trace is any sequence of objects with ``t``, ``kind``, ``node``, ``key`` and
``version`` (and optionally ``detail`` and ``since``), such as the simulator's
TraceEvent. A ``deliver`` or ``drop`` event with ``since`` is a message that left
Redis at ``since``: it is drawn as a dot travelling until ``t``. Frames are plain
data, so both the matplotlib animation and the widget player draw the same ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

REDIS = "redis"
"""The name of the box every message passes through."""

_CLEARS = frozenset({"flush", "crash", "restart"})
_DROPS = frozenset({"evict", "expire", "invalidate", "applied"})
_DOWN = frozenset({"partition", "disconnect", "crash"})
_UP = frozenset({"heal", "reconnect", "restart"})
_READS = frozenset({"read", "stale_read"})
_MESSAGES = frozenset({"deliver", "drop"})
_MOVING = _MESSAGES | _READS | {"write"}


@dataclass(frozen=True)
class Event:
    """One trace event, normalised (the simulator's or one recorded from real nodes)."""

    t: float
    kind: str
    node: str
    key: str = ""
    version: int = 0
    detail: str = ""
    since: float | None = None


@dataclass(frozen=True)
class Dot:
    """A message between two boxes: ``progress`` 0 at ``src``, 1 at ``dst``."""

    src: str
    dst: str
    progress: float
    key: str
    version: int
    what: str = "message"
    """``message`` (Redis to a node), ``write`` (a node to Redis) or ``load`` (a read's reply)."""


@dataclass(frozen=True)
class Frame:
    """Everything one picture shows, at time ``t``."""

    t: float
    nodes: tuple[str, ...]
    caches: dict[str, dict[str, int]]
    store: dict[str, int]
    dots: tuple[Dot, ...] = ()
    drops: tuple[Dot, ...] = ()
    stale: tuple[tuple[str, str], ...] = ()
    reads: tuple[tuple[str, str], ...] = ()
    down: frozenset[str] = field(default_factory=frozenset)
    caption: str = ""


def normalise(trace: Iterable[Any]) -> list[Event]:
    """Events sorted by time, from any objects shaped like the simulator's TraceEvent."""
    events = [
        Event(
            float(e.t),
            str(e.kind),
            str(e.node),
            str(getattr(e, "key", "") or ""),
            int(getattr(e, "version", 0) or 0),
            str(getattr(e, "detail", "") or ""),
            _since(getattr(e, "since", None)),
        )
        for e in trace
    ]
    events.sort(key=lambda e: e.t)
    return events


def _since(value: Any) -> float | None:
    """A start time, or None."""
    return None if value is None else float(value)


def node_names(events: Sequence[Event]) -> tuple[str, ...]:
    """The nodes a trace mentions, in cluster order: ``a`` ... ``z``, then ``n26`` ..."""
    names = {e.node for e in events if e.node and e.node != REDIS}
    return tuple(sorted(names, key=lambda name: (len(name), name)))


def frame_times(events: Sequence[Event], max_frames: int = 120, steps: int = 4) -> list[float]:
    """Every event's time plus ``steps`` points inside each flight, thinned to ``max_frames``."""
    times = {e.t for e in events}
    for e in events:
        if e.kind in _MOVING and e.since is not None and e.t > e.since:
            times.update(e.since + (e.t - e.since) * i / steps for i in range(1, steps))
    ordered = sorted(times)
    if len(ordered) <= max_frames:
        return ordered
    last = len(ordered) - 1
    return [ordered[round(i * last / (max_frames - 1))] for i in range(max_frames)]


class _State:
    """The caches, store and links as the events so far left them."""

    def __init__(self, nodes: Sequence[str], carries_value: bool) -> None:
        self.caches: dict[str, dict[str, int]] = {n: {} for n in nodes}
        self.store: dict[str, int] = {}
        self.down: set[str] = set()
        self.carries_value = carries_value

    def apply(self, e: Event) -> None:
        """Fold one event in (live ``applied`` events, or the simulator's ``deliver``)."""
        cache = self.caches.get(e.node, {})
        kind = "applied" if e.kind == "deliver" and e.detail.endswith(":applied") else e.kind
        if kind == "write":
            self.store[e.key] = max(e.version, self.store.get(e.key, 0))
            if e.detail in ("del", "inv"):
                cache.pop(e.key, None)
        elif kind == "fill":
            cache[e.key] = e.version
        elif kind == "applied" and self.carries_value and e.detail in ("", "set:applied"):
            if e.key in cache:
                cache[e.key] = max(cache[e.key], e.version)
        elif kind in _DROPS:
            cache.pop(e.key, None)
        elif kind in _CLEARS:
            cache.clear()
        self._link(e)

    def _link(self, e: Event) -> None:
        """Track which nodes are cut off or down."""
        if e.kind in _DOWN and e.detail != "heal":
            self.down.add(e.node)
        elif e.kind in _UP or e.detail == "heal":
            self.down.discard(e.node)


def build_frames(
    trace: Iterable[Any],
    *,
    nodes: Sequence[str] | None = None,
    carries_value: bool = False,
    max_frames: int = 120,
    linger: float | None = None,
) -> list[Frame]:
    """Frames of a trace. ``carries_value``: an ``applied`` message updates, not evicts.

    ``linger`` is how long a red cross or a stale-read highlight stays on screen
    (default: a twentieth of the trace's span).
    """
    events = normalise(trace)
    names = tuple(nodes) if nodes is not None else node_names(events)
    if not events:
        return [Frame(0.0, names, {n: {} for n in names}, {})]
    span = events[-1].t - min(e.since if e.since is not None else e.t for e in events)
    linger = span / 20 if linger is None else linger
    state = _State(names, carries_value)
    frames, applied, previous = [], 0, None
    for t in frame_times(events, max_frames):
        while applied < len(events) and events[applied].t <= t:
            state.apply(events[applied])
            applied += 1
        frames.append(_frame(t, names, state, events, linger, previous))
        previous = t
    return frames


def _frame(
    t: float,
    names: tuple[str, ...],
    state: _State,
    events: Sequence[Event],
    linger: float,
    previous: float | None,
) -> Frame:
    """Freeze the state at ``t`` with what is moving and what just happened."""
    dots, drops, stale, reads = [], [], [], []
    for e in events:
        if e.kind in _MESSAGES and e.since is not None and e.since <= t < e.t:
            dots.append(Dot(REDIS, e.node, (t - e.since) / (e.t - e.since), e.key, e.version))
        elif e.kind == "write" and e.since is not None and e.since <= t < e.t:
            dots.append(
                Dot(e.node, REDIS, (t - e.since) / (e.t - e.since), e.key, e.version, "write")
            )
        elif e.kind in _READS and e.since is not None and e.since <= t < e.t:
            dots.append(
                Dot(REDIS, e.node, (t - e.since) / (e.t - e.since), e.key, e.version, "load")
            )
        elif e.kind == "drop" and e.t <= t <= e.t + linger:
            drops.append(Dot(REDIS, e.node, 0.5, e.key, e.version))
        elif e.kind == "stale_read" and e.t <= t <= e.t + linger:
            stale.append((e.node, e.key))
        elif e.kind in _READS and e.t <= t <= e.t + linger:
            reads.append((e.node, e.key))
    return Frame(
        t,
        names,
        {n: dict(c) for n, c in state.caches.items()},
        dict(state.store),
        tuple(dots),
        tuple(drops),
        tuple(stale),
        tuple(reads),
        frozenset(state.down),
        _caption(t, events, previous),
    )


def _caption(t: float, events: Sequence[Event], previous: float | None) -> str:
    """What happened since the previous frame, newest last, at most three lines."""
    lines = [_describe(e) for e in events if (previous is None or e.t > previous) and e.t <= t]
    return "\n".join(lines[-3:])


def _describe(e: Event) -> str:
    """One event as a short line."""
    what = f"{e.node}: {e.kind.replace('_', ' ')}"
    if e.key:
        what += f" {e.key}"
    if e.version:
        what += f" v{e.version}"
    if e.detail:
        what += f" ({e.detail})"
    return what
