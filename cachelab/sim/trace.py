"""The trace: what happened, in time order, for a renderer to draw frame by frame.

Each event is ``TraceEvent(t, kind, node, key, version, detail, since)``. ``node``
is a node's name, or ``"redis"``, ``"external"`` or ``"db"``; ``key`` is "" for
node-wide events; ``since`` is when the thing drawn began (``t`` when instant).
``version`` is the history's: across a Redis restart it keeps rising, though the nodes
see Redis's sequence start again (see ``cachelab.sim.engine``).

============== ============================================================
kind           meaning (``detail``)
============== ============================================================
write          the store applied a write by ``node`` (``set``, ``del``,
               ``inv``, or ``fill``: a cache-aside value stored in Redis)
db_write       a node wrote the database (cache-aside runs)
db_load        a node read ``key`` from the database (cache-aside runs)
lease          a cache-aside read was refused the lease and will retry
send           Redis published the message of ``node``'s write (op)
deliver        the message reached ``node``; ``since`` is its send time; detail
               is ``op:outcome``, outcome ``applied``, ``outdated`` or ``own``
drop           the message sent at ``since`` never reached ``node``; detail is
               why: ``loss``, ``partition``, ``disconnected`` or ``down``
read           a read by ``node`` completed (``hit``, ``miss`` or ``joined`` a
               load in flight); ``since`` is its start
stale_read     the same, and the checker found it stale
fill           ``node`` cached ``key`` at ``version`` (``since``: the load start)
fill_rejected  the fill guard, a tombstone or ordering refused that fill
evict          LRU pushed ``key`` out of ``node``
flush          ``node`` dropped its whole local cache
gap            ``node`` saw a skipped sequence number (a repair or flush follows)
suspect        ``node`` stopped trusting its entries of ``version`` or newer (0:
               all) until repair checks them; they are not served meanwhile
repair_keep    repair found ``node``'s suspect ``key`` current: trusted again at
               the store's ``version``
repair_drop    repair found ``node``'s suspect ``key`` changed: dropped
restore        ``node`` (stream) read on from its last id after a reconnect, saw no
               gap, and trusts its suspects again as they are, with no round trip
reset          ``node`` found the store's counter restarted (a new incarnation)
forged         ``node`` refused a message claiming what the store never issued
disconnect     ``node``'s subscription went down (and it was told)
reconnect      ``node`` resubscribed after a disconnect
partition      ``node``'s subscription was cut silently (``start``) or healed
crash          ``node`` died, losing its cache and its reads in flight
restart        ``node`` came back with an empty cache
redis_restart  Redis lost every key and its sequence number (``version``: that
               of the restart's deletes, the first of the new numbering)
garbage        raw bytes that are not a message reached ``node``
============== ============================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

KINDS = frozenset(
    {
        "write",
        "db_write",
        "db_load",
        "lease",
        "send",
        "deliver",
        "drop",
        "read",
        "stale_read",
        "fill",
        "fill_rejected",
        "evict",
        "flush",
        "gap",
        "suspect",
        "repair_keep",
        "repair_drop",
        "restore",
        "reset",
        "forged",
        "disconnect",
        "reconnect",
        "partition",
        "crash",
        "restart",
        "redis_restart",
        "garbage",
    }
)


class TraceEvent(NamedTuple):
    """One thing that happened at virtual time ``t`` (see the module docstring)."""

    t: float
    kind: str
    node: str
    key: str
    version: int
    detail: str
    since: float


Caches = dict[str, dict[str, int]]
_DROPS = frozenset({"del", "inv"})
_ENTRY_CHANGES = frozenset({"fill", "evict", "deliver", "repair_keep", "repair_drop"})
"""Kinds that end a key's suspicion, whatever else they do."""


class _Replay:
    """Per-node cache contents rebuilt from trace events."""

    def __init__(self, nodes: Iterable[str], carries_value: bool, ttl: float | None) -> None:
        self.entries: dict[str, dict[str, tuple[int, float]]] = {n: {} for n in nodes}
        self.suspects: dict[str, dict[str, tuple[int, float]]] = {n: {} for n in nodes}
        self.carries_value = carries_value
        self.ttl = ttl

    def apply(self, event: TraceEvent) -> None:
        """Change the contents as ``event`` did."""
        cache = self.entries.get(event.node)
        if cache is None:
            return
        kind, suspects = event.kind, self.suspects[event.node]
        own = kind == "deliver" and event.detail.endswith(":own")  # changes nothing
        suspect = suspects.get(event.key) if kind in _ENTRY_CHANGES and not own else None
        if suspect is not None and (kind != "deliver" or event.version > suspect[0]):
            del suspects[event.key]  # a change ends suspicion; an older message does not
        if kind == "fill":
            cache[event.key] = (event.version, event.t)
        elif kind == "evict" or (kind == "write" and event.detail in _DROPS):
            cache.pop(event.key, None)  # a negative entry's fill, if any, comes next
        elif kind in ("flush", "crash", "restart"):
            cache.clear()
            suspects.clear()
        elif kind == "deliver" and event.detail.endswith(":applied"):
            self._applied(cache, event, suspect)
        elif kind == "suspect":
            for key in [k for k, (v, _) in cache.items() if v >= event.version]:
                suspects[key] = cache.pop(key)
        elif kind == "repair_keep" and suspect is not None:
            cache[event.key] = (event.version, suspect[1])  # its TTL runs from its fill
        elif kind == "restore":
            for key, held in suspects.items():
                cache.setdefault(key, held)
            suspects.clear()

    def _applied(
        self,
        cache: dict[str, tuple[int, float]],
        event: TraceEvent,
        suspect: tuple[int, float] | None,
    ) -> None:
        """A peer's change: the update strategy replaces a held value, others drop it."""
        if self.carries_value and event.detail == "set:applied":
            newer = suspect is not None and event.version > suspect[0]
            if event.key in cache or newer:
                cache[event.key] = (event.version, event.t)
        else:
            cache.pop(event.key, None)

    def contents(self, now: float) -> Caches:
        """``node -> {key: version}``, without entries whose TTL has passed."""
        ttl = self.ttl
        return {
            node: {k: v for k, (v, t) in cache.items() if ttl is None or t + ttl > now}
            for node, cache in self.entries.items()
        }


def caches_at(
    trace: tuple[TraceEvent, ...],
    index: int,
    nodes: Iterable[str],
    *,
    carries_value: bool = False,
    ttl: float | None = None,
) -> Caches:
    """Each node's cache (``key -> version``) after the first ``index`` events."""
    replay = _Replay(nodes, carries_value, ttl)
    for event in trace[:index]:
        replay.apply(event)
    now = trace[index - 1].t if 0 < index <= len(trace) else 0.0
    return replay.contents(now)
