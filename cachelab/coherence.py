"""Coherence strategies: small policy objects, apart from the mechanism.

A strategy decides what a write publishes and what a message does to the local
store. It knows nothing of sockets, threads or Redis. Reconnects and sequence gaps
are handled the same way by every subscribing strategy (repair), in the node; its
``transport`` says how messages travel: ``"pubsub"`` (at most once: a reconnect means
repair) or ``"stream"`` (a capped Redis Stream read from the last entry id: a reconnect
means replay, and only a trimmed stream means repair).
"""

from __future__ import annotations

from typing import ClassVar

from cachelab.codec import JSON, RAW, Codec
from cachelab.local import LocalStore
from cachelab.messages import NO_VALUE, Message


class Strategy:
    """Base policy: peers evict a key when it changes."""

    name = "invalidate"
    subscribes = True
    carries_value = False
    own_marker = False  # True: each node proves its own delivery (Cluster.settle asks each)
    transport = "pubsub"
    codec: ClassVar[Codec] = JSON  # how values are stored (codec.py)
    # The store numbers versions; False: the node numbers what it hears and does itself.
    store_versions = True
    keeps_writes = True  # the writer caches what it wrote (tracking: the server tracks reads only)

    def apply(self, store: LocalStore, msg: Message) -> bool:
        """Apply a peer's change to ``store``; False if it was outdated."""
        return store.invalidate(msg.key, msg.seq)

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"


class NoCoherence(Strategy):
    """A local cache with a TTL only: no messages. It exists to show staleness."""

    name = "none"
    subscribes = False


class Invalidate(Strategy):
    """Peers drop the key and reload it on their next read."""


class Update(Strategy):
    """Peers take the new value from the message, if they hold the key."""

    name = "update"
    carries_value = True

    def apply(self, store: LocalStore, msg: Message) -> bool:
        """Replace the cached value for sets; evict for deletes and invalidations."""
        if msg.op == "set" and msg.value is not NO_VALUE:
            return store.update(msg.key, msg.value, msg.seq)
        return store.invalidate(msg.key, msg.seq)


class Tracking(Strategy):
    """Redis itself tells each node which keys changed (CLIENT TRACKING): keys anyone writes.

    The messages carry no versions, so the node numbers what it hears and does itself: an
    invalidation it hears and a write it makes take the next number of its own sequence,
    and a load is stamped with the number current when it started (core.py applies this).
    """

    name = "tracking"
    own_marker = True
    codec = RAW
    store_versions = False
    keeps_writes = False


class Stream(Strategy):
    """Peers drop the key, as with ``invalidate``; messages travel in a capped Redis Stream
    that each node reads from its last entry id, so a blip costs a replay, not a repair."""

    name = "stream"
    transport = "stream"


STRATEGIES: dict[str, type[Strategy]] = {
    "none": NoCoherence,
    "invalidate": Invalidate,
    "update": Update,
    "tracking": Tracking,
    "stream": Stream,
}


def strategy_for(name: str | Strategy) -> Strategy:
    """Look a strategy up by name; ValueError names the choices."""
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name]()
    except (KeyError, TypeError):
        choices = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; choose one of {choices}") from None
