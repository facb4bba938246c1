"""A trace as the viewer's data: events in time order, each with what it changed.

A trace is any sequence of objects with ``t``, ``kind``, ``node``, ``key`` and
``version`` (and optionally ``detail`` and ``since``), such as the simulator's
TraceEvent or the live panel's Event. ``timeline`` replays it once, here, and
records each event's effect on the caches, on Redis and on the links; the viewer
only adds effects up, so the drawing never disagrees with this replay.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cachelab.lab.viz.kinds import kind_of, outcome

REDIS = "redis"
"""The name of the box every message passes through."""
LIMIT = 3000
"""Events kept per pane: the viewer replays up to the current time on every frame."""

_CLEARS = frozenset({"flush", "crash", "restart"})
_DROPS = frozenset({"evict", "expire", "invalidate", "applied"})
_DOWN = frozenset({"partition", "disconnect", "crash"})
_UP = frozenset({"heal", "reconnect", "restart"})


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


def normalise(trace: Iterable[Any]) -> list[Event]:
    """Events sorted by time (stable), from any objects shaped like TraceEvent."""
    events = [
        Event(
            float(e.t),
            str(e.kind),
            str(e.node),
            str(getattr(e, "key", "") or ""),
            int(getattr(e, "version", 0) or 0),
            str(getattr(e, "detail", "") or ""),
            None if getattr(e, "since", None) is None else float(e.since),
        )
        for e in trace
    ]
    events.sort(key=lambda e: e.t)
    return events


def node_names(events: Sequence[Event]) -> tuple[str, ...]:
    """The nodes a trace mentions, in cluster order: ``a`` ... ``z``, then ``n26`` ..."""
    names = {e.node for e in events if e.node and e.node not in (REDIS, "external", "db")}
    return tuple(sorted(names, key=lambda name: (len(name), name)))


class Replay:
    """The caches, Redis and the links as the events so far left them."""

    def __init__(self, nodes: Sequence[str], carries_value: bool) -> None:
        self.caches: dict[str, dict[str, int]] = {n: {} for n in nodes}
        self.store: dict[str, int] = {}
        self.down: set[str] = set()
        self.carries_value = carries_value

    def apply(self, e: Event) -> dict[str, Any]:
        """Fold one event in; return its effect (``cache``, ``clear``, ``store``, ``down``)."""
        cache = self.caches.get(e.node)
        before = None if cache is None else dict(cache)
        stored, was_down = self.store.get(e.key), e.node in self.down
        self._cache(e, cache)
        self._link(e)
        effect: dict[str, Any] = {}
        if cache is not None and before is not None:
            effect.update(_diff(before, cache))
        if e.key and self.store.get(e.key) != stored:
            effect["store"] = self.store[e.key]
        if (e.node in self.down) != was_down:
            effect["down"] = e.node in self.down
        return effect

    def _cache(self, e: Event, cache: dict[str, int] | None) -> None:
        """What the event does to its node's cache and to Redis."""
        if e.kind == "write":
            self.store[e.key] = max(e.version, self.store.get(e.key, 0))
        if cache is None:
            return
        kind = "applied" if e.kind == "deliver" and e.detail.endswith(":applied") else e.kind
        if kind == "write" and e.detail in ("del", "inv"):
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

    def _link(self, e: Event) -> None:
        """Track which nodes are cut off or down."""
        if e.kind in _DOWN and e.detail != "heal":
            self.down.add(e.node)
        elif e.kind in _UP or e.detail == "heal":
            self.down.discard(e.node)


def _diff(old: dict[str, int], new: dict[str, int]) -> dict[str, Any]:
    """A cache's change: ``clear`` when it emptied, else the keys set or removed."""
    if old and not new:
        return {"clear": True}
    changed = [[k, v] for k, v in new.items() if old.get(k) != v]
    changed += [[k, None] for k in old if k not in new]
    return {"cache": changed} if changed else {}


def explain(e: Event, off: Collection[str] = ()) -> str:
    """One event in words: what happened, and why (in a run with the safeguards ``off``)."""
    words = kind_of(e.kind).words(off).format(
        node=e.node, key=e.key or "-", version=e.version, detail=e.detail or "-",
        outcome=outcome(e.detail),
    )
    return words


def headline(e: Event) -> str:
    """A short line: ``b: fill rejected k v1``."""
    text = f"{e.node}: {kind_of(e.kind).label}"
    if e.key:
        text += f" {e.key} v{e.version}"  # v0: the key was absent
    if e.detail and e.kind not in ("read", "stale_read"):
        text += f" ({e.detail})"
    return text


def pane(
    trace: Iterable[Any],
    *,
    nodes: Sequence[str] | None = None,
    carries_value: bool = False,
    title: str = "",
    verdict: str = "",
    ok: bool | None = None,
    limit: int = LIMIT,
    off: Collection[str] = (),
) -> dict[str, Any]:
    """One trace as the viewer draws it: nodes, events with effects, kinds, verdict.

    ``off`` names the safeguards switched off in the run, so no caption credits them.
    """
    events = normalise(trace)
    names = tuple(nodes) if nodes is not None else node_names(events)
    cut = len(events) > limit
    events = events[:limit]
    replay = Replay(names, carries_value)
    rows = [_row(e, replay.apply(e), off) for e in events]
    note = f" (first {limit} events of a longer trace)" if cut else ""
    return {
        "title": title,
        "verdict": verdict + note,
        "ok": ok,
        "nodes": list(names),
        "events": rows,
        "kinds": {k: _kind_json(k, off) for k in sorted({e.kind for e in events})},
    }


def _row(e: Event, effect: dict[str, Any], off: Collection[str] = ()) -> dict[str, Any]:
    """One event as the viewer's JSON."""
    row: dict[str, Any] = {"t": e.t, "kind": e.kind, "node": e.node, "key": e.key}
    row.update(v=e.version, detail=e.detail, head=headline(e), why=explain(e, off), **effect)
    if e.since is not None and e.since < e.t:
        row["since"] = e.since
    return row


def _kind_json(name: str, off: Collection[str] = ()) -> dict[str, str]:
    """A kind's look, for the viewer's legend and markers."""
    kind = kind_of(name)
    guard = f"{kind.safeguard} (off in this run)" if kind.is_off(off) else kind.safeguard
    return {"label": kind.label, "color": kind.color, "role": kind.role, "safeguard": guard}


def stops(panes: Sequence[dict[str, Any]]) -> list[float]:
    """The times ``step`` moves between: every drawn event of every pane, once."""
    times = {
        row["t"]
        for p in panes
        for row in p["events"]
        if p["kinds"][row["kind"]]["role"] != "quiet"
    }
    return sorted(times)
