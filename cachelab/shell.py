"""What every shell around the protocol core shares: the threaded CacheNode (node.py) and
the asyncio AsyncCacheNode (async_node.py) build messages, keep private copies, pick their
signer and log refused messages through these, so no shell holds a second copy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from cachelab import decorators, validate
from cachelab.auth import Signer
from cachelab.bus import Heartbeat
from cachelab.coherence import Strategy
from cachelab.core import Flight, NodeCore, Switches
from cachelab.decorators import Cached, CachedMethod
from cachelab.local import LocalStore, Timer
from cachelab.messages import InvalidMessage, WrongVersion, decode_value, fits, message_head
from cachelab.stats import LagStats

log = logging.getLogger("cachelab.node")

_MUTABLE = (list, dict)


def write_head(strategy: Strategy, prefix: str, op: str, key: str, encoded: str) -> str:
    """The message a write publishes: every strategy tells the listeners.

    The value rides along for the ``update`` strategy when the message stays within
    the size every peer accepts; otherwise peers drop the key and reload it.
    """
    if op == "set" and strategy.carries_value:
        head = message_head(prefix, op, key, encoded)
        if fits(head):
            return head
    return message_head(prefix, op, key, None)


def private(value: Any, encoded: str) -> Any:
    """The node's own copy of a mutable value, so the caller's later changes stay theirs."""
    return decode_value(encoded) if type(value) in _MUTABLE else value


def flight_inc(flight: Flight) -> str:
    """The incarnation of a ticket's version."""
    return "" if flight.reply is None else flight.reply.inc


def choose_signer(
    secret: bytes | str | None, given: bytes | str | None, namespace: str
) -> Signer | None:
    """The namespace's signer, from ``secret=`` or the client's own (``connect(secret=...)``)."""
    if (
        secret is not None
        and given is not None
        and Signer(secret, namespace).key != Signer(given, namespace).key
    ):
        raise ValueError("secret= differs from the secret given to connect()")
    chosen = secret if secret is not None else given
    return None if chosen is None else Signer(chosen, namespace)


class RefusalLog:
    """Say once per kind why a node refuses messages (a peer to upgrade or to configure)."""

    def __init__(self, name: str, namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self._logged: set[str] = set()

    def once(self, error: InvalidMessage) -> None:
        """Log ``error`` unless one of its kind was logged already."""
        kind = type(error).__name__ + (str(error) if isinstance(error, WrongVersion) else "")
        if kind not in self._logged and len(self._logged) < 16:  # publishers choose the words
            self._logged.add(kind)
            log.warning(
                "node %r (namespace %r) refuses messages: %s", self.name, self.namespace, error
            )


def switches_of(
    fill_guard: Any, gap_detection: Any, reconnect_flush: Any, negative_cache: Any, repair: Any
) -> Switches:
    """The safeguards a node's options ask for, each checked to be a bool."""
    return Switches(
        fill_guard=validate.flag("fill_guard", fill_guard),
        gap_detection=validate.flag("gap_detection", gap_detection),
        reconnect_flush=validate.flag("reconnect_flush", reconnect_flush),
        negative_cache=validate.flag("negative_cache", negative_cache),
        repair=validate.flag("repair", repair),
    )


def local_store(
    max_entries: int,
    ttl: Any,
    timer: Timer,
    tombstones: Any,
    tombstone_ttl: Any,
    ordering: Any,
    on_evict: Callable[[str, int], None],
) -> LocalStore:
    """A node's bounded local store, from its checked options."""
    return LocalStore(
        max_entries,
        validate.seconds("ttl", ttl, optional=True),
        timer=timer,
        tombstones=validate.flag("tombstones", tombstones),
        tombstone_ttl=validate.seconds("tombstone_ttl", tombstone_ttl) or 60.0,
        ordering=validate.flag("ordering", ordering),
        on_evict=on_evict,
    )

P = ParamSpec("P")
R = TypeVar("R")


class NodeFace:
    """What every shell offers on top of the core: decorators, the LRU's bound, the lag.

    A shell (``CacheNode``, ``AsyncCacheNode``) has ``_core`` and ``_bus``.
    """

    _core: NodeCore
    _bus: Any

    @property
    def max_entries(self) -> int:
        """The bound of the local LRU."""
        return self._core.local.maxsize

    @overload
    def cached(self, func: Callable[P, R], **options: Any) -> Cached[P, R]: ...

    @overload
    def cached(
        self, func: None = None, **options: Any
    ) -> Callable[[Callable[P, R]], Cached[P, R]]: ...

    def cached(self, func: Callable[P, R] | None = None, **options: Any) -> Any:
        """Cache a function's results through this node: ``@node.cached(key="user:{0}",
        ttl=60)``, or ``@node.cached``. See ``cachelab.decorators``."""
        return decorators.cached(self, func, **options)

    @overload
    def cached_method(self, func: Callable[..., Any], **options: Any) -> CachedMethod: ...

    @overload
    def cached_method(
        self, func: None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], CachedMethod]: ...

    def cached_method(self, func: Callable[..., Any] | None = None, **options: Any) -> Any:
        """As ``cached``, for methods (``self`` is not in the key unless the key names it)."""
        return decorators.cached_method(self, func, **options)

    @property
    def propagation_lag(self) -> LagStats | None:
        """The round trips of this node's heartbeat; None when it has none (strategy
        ``none``, ``stream``, or a bus of the simulator's); a count of 0 with
        ``heartbeat=None`` or before the first beat came back.

        One round trip runs from just before the node publishes a beat (through the write
        path's script, on a pooled connection) to the beat's arrival on the node's own
        subscription, after whatever messages were queued before it: the time a message
        takes through Redis to this node, publish included. It is not a peer-to-peer
        delay: no clock of another node is involved. Under ``tracking`` it is a PING's
        round trip on the redirect connection. One beat every ``heartbeat`` seconds.
        """
        heartbeat = getattr(self._bus, "heartbeat", None)
        return heartbeat.lag.snapshot() if isinstance(heartbeat, Heartbeat) else None

