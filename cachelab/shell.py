"""What every shell around the protocol core shares: the threaded CacheNode (node.py) and
the asyncio AsyncCacheNode (async_node.py) build messages, keep private copies, pick their
signer and log refused messages through these, so no shell holds a second copy.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from cachelab import decorators, validate
from cachelab.auth import Signer
from cachelab.bus import Heartbeat
from cachelab.coherence import Strategy, strategy_for
from cachelab.core import NodeCore, Switches
from cachelab.decorators import Cached, CachedMethod, CacheOptions
from cachelab.hooks import Hooks, Recorder
from cachelab.local import LocalStore, Timer
from cachelab.messages import ABSENT, InvalidMessage, WrongVersion, message_prefix
from cachelab.plans import Plans
from cachelab.stats import LagStats
from cachelab.strict import Gate

if TYPE_CHECKING:  # Python 3.10 has no typing.Unpack; annotations are never evaluated
    from typing_extensions import Unpack

log = logging.getLogger("cachelab.node")

_MUTABLE = (list, dict)


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
) -> LocalStore:
    """A node's bounded local store, from its checked options."""
    return LocalStore(
        max_entries,
        validate.seconds("ttl", ttl, optional=True),
        timer=timer,
        tombstones=validate.flag("tombstones", tombstones),
        tombstone_ttl=validate.seconds("tombstone_ttl", tombstone_ttl) or 60.0,
        ordering=validate.flag("ordering", ordering),
    )


P = ParamSpec("P")
R = TypeVar("R")


class NodeFace:
    """What every shell offers on top of the core: decorators, the LRU's bound, the lag.

    A shell (``CacheNode``, ``AsyncCacheNode``) has ``_core`` and ``_bus``.
    """

    _core: NodeCore
    _bus: Any

    name: str
    namespace: str
    id: str
    strategy: Strategy
    _timer: Timer
    _recorder: Recorder | None
    _record: Callable[..., None]
    _entries: Any  # the local store's dict, which the hit path reads directly
    _hits: int
    _gate: Gate | None  # strict=True's

    def _name(
        self, name: str, namespace: str, strategy: str | Strategy, timer: Any, recorder: Any
    ) -> None:
        """Check and set what names the node, and the hooks its hit path reads inline."""
        validate.name("name", name, 100)
        self.name = name
        self.namespace = validate.namespace(namespace)
        self.id = f"{name}#{secrets.token_hex(4)}"
        self.strategy = strategy_for(strategy)
        self._timer = validate.hook("timer", timer) or time.monotonic
        self._recorder = validate.hook("recorder", recorder)

    def _assemble(
        self, local: LocalStore, switches: Switches, ordered: bool, events: Any, repair_batch: Any
    ) -> tuple[NodeCore, Plans, Hooks]:
        """The core over ``local``, its plans, and the node's hooks (hook errors are counted
        by ``_failed``)."""
        core = NodeCore(self.id, self.strategy, local, switches, ordered)
        core.recording = self._recorder is not None
        hook = validate.hook("events", events)
        hooks = Hooks(self.name, hook, self._recorder, self._timer, self._failed)
        repair_size = validate.count("repair_batch", repair_batch)
        return core, Plans(core, message_prefix(self.namespace, self.id), repair_size), hooks

    def _failed(self) -> int:
        """One more hook failure; the count so far."""
        return self._core.hook_failed()

    @property
    def max_entries(self) -> int:
        """The bound of the local LRU."""
        return self._core.local.maxsize

    @property
    def switches(self) -> Switches:
        """The safeguards this node runs (fill_guard, gap_detection, ...), read-only."""
        return self._core.switches

    @property
    def coherent(self) -> bool:
        """Whether this node currently trusts its local cache (its bus is up)."""
        return self._core.coherent

    def _synced(self, nonce: str) -> bool:
        """Whether the sync marker ``nonce`` reached this node, and no repair is owed."""
        return self._core.has_synced(nonce)

    # The decorators' options are typed (no ``**options: Any``), so that a type checker
    # catches a misspelt one, as it does for ``decorators.cached``.

    @overload
    def cached(self, func: Callable[P, R], **options: Unpack[CacheOptions]) -> Cached[P, R]: ...

    @overload
    def cached(
        self, func: None = None, **options: Unpack[CacheOptions]
    ) -> Callable[[Callable[P, R]], Cached[P, R]]: ...

    def cached(
        self, func: Callable[P, R] | None = None, **options: Unpack[CacheOptions]
    ) -> Any:
        """Cache a function's results through this node: ``@node.cached(key="user:{0}",
        ttl=60)``, or ``@node.cached``. See ``cachelab.decorators``."""
        return decorators.cached(self, func, **options)

    @overload
    def cached_method(
        self, func: Callable[..., Any], **options: Unpack[CacheOptions]
    ) -> CachedMethod: ...

    @overload
    def cached_method(
        self, func: None = None, **options: Unpack[CacheOptions]
    ) -> Callable[[Callable[..., Any]], CachedMethod]: ...

    def cached_method(
        self, func: Callable[..., Any] | None = None, **options: Unpack[CacheOptions]
    ) -> Any:
        """As ``cached``, for methods (``self`` is not in the key unless the key names it)."""
        return decorators.cached_method(self, func, **options)

    def peek(self, key: str, default: Any = None) -> Any:
        """The local value of ``key``, or ``default``: never a round trip, never a load.

        A hit counts in ``stats.hits`` (and is recorded) as ``get``'s would; a miss counts
        nothing, since the load that usually follows it counts it. Under strict=True it
        answers ``default`` while a message may wait unread.
        """
        entry = self._entries.get(key)
        if entry is None or not entry[2] > self._timer() or not self._quiet():
            return default
        with contextlib.suppress(KeyError):  # evicted meanwhile: still a read before that
            self._entries.move_to_end(key)
        self._hits += 1
        if self._recorder is not None:
            self._record("read", key, self._timer(), entry[1], True, self._core.seq.inc)
        value = entry[0]
        return default if value is ABSENT else value

    def _quiet(self) -> bool:
        """Whether a hit may be served: always, unless strict=True and a message may wait
        unread, or a claimed gap is in doubt."""
        gate = self._gate
        return gate is None or (gate.quiet(gate.turn) and not self._core.seq.doubted)

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
