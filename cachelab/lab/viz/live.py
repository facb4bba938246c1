"""Real CacheNodes on fakeredis or a real Redis, with a gate on each node's subscription.

The gate sits between a node's RedisBus and the node. It can delay messages,
lose a share of them, drop the next one, or cut the node off: all the failures
the control panel offers, applied to the real protocol code over a real server.
Cutting a node off is reported exactly as a dropped pub/sub connection would be
(``disconnected``, then ``subscribed(first=False)`` on healing); the node's own
commands still reach Redis.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from typing import Any

import redis

from cachelab.backends import connect
from cachelab.bus import Listener, RedisBus
from cachelab.cluster import node_names, settle_markers
from cachelab.lab.viz.timeline import Event
from cachelab.messages import MARKERS, InvalidMessage, channel, decode
from cachelab.node import CacheNode
from cachelab.store import RedisStore


class Gate:
    """A Bus that hands a RedisBus's messages on to a node, unless told to lose them."""

    ordered = True  # it loses messages, but never reorders or repeats them

    def __init__(self, inner: RedisBus, namespace: str, rng: random.Random) -> None:
        self.inner = inner
        self.namespace = namespace
        self.delay = 0.0
        self.loss = 0.0
        self.cut = False
        self.drop_next = False
        self.dropped = 0
        self._rng = rng
        self._listener: Listener | None = None
        self._lock = threading.Lock()

    def start(self, listener: Listener) -> None:
        """Subscribe, passing everything through this gate."""
        self._listener = listener
        self.inner.start(self)

    def stop(self) -> None:
        """Ask the underlying bus to stop."""
        self.inner.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the underlying bus."""
        self.inner.join(timeout)

    # -- the Listener side, called from the bus thread ------------------------

    def receive(self, raw: bytes) -> None:
        """Deliver, delay or lose one message (markers are never lost: settle needs syncs,
        and a heartbeat lost here would read as a deaf connection)."""
        assert self._listener is not None
        if self._lose(raw):
            return
        if self.delay:
            time.sleep(self.delay)  # in the listener thread: messages stay in order
        self._listener.receive(raw)

    def _lose(self, raw: bytes) -> bool:
        """Whether this message is lost on its way to the node."""
        with self._lock:
            if self.cut:
                return True
            if _is_marker(raw, self.namespace):
                return False
            if self.drop_next or (self.loss and self._rng.random() < self.loss):
                self.drop_next = False
                self.dropped += 1
                return True
            return False

    def send_beat(self, channel: str, token: str) -> None:
        """The node sends the heartbeats (they pass the gate: they prove the connection)."""
        assert self._listener is not None
        self._listener.send_beat(channel, token)

    def doubting(self) -> bool:
        """Whether the node waits for a marker to decide a claimed gap."""
        return self._listener is not None and self._listener.doubting()

    def maintain(self) -> None:
        """Let the node finish owed work."""
        if self._listener is not None:
            self._listener.maintain()

    def subscribed(self, first: bool) -> None:
        """Pass (re)subscriptions on, unless cut off."""
        if self._listener is not None and not self.cut:
            self._listener.subscribed(first)

    def disconnected(self) -> None:
        """Pass a real disconnection on."""
        if self._listener is not None:
            self._listener.disconnected()

    # -- control, called from the notebook ----------------------------------

    def set_cut(self, cut: bool) -> None:
        """Cut the node off (its connection drops) or heal it (it resubscribes)."""
        assert self._listener is not None
        with self._lock:
            if cut == self.cut:
                return
            self.cut = cut
        if cut:
            self._listener.disconnected()
        else:
            self._listener.subscribed(False)


def _is_marker(raw: bytes, namespace: str) -> bool:
    """Whether ``raw`` is a marker (a settle sync or a heartbeat)."""
    try:
        return decode(raw, namespace).op in MARKERS
    except InvalidMessage:
        return False


class LiveCluster:
    """``n`` real CacheNodes, each behind a Gate, recording their events as a trace."""

    def __init__(
        self,
        n: int = 3,
        *,
        url: str | None = None,
        client: redis.Redis | None = None,
        strategy: str = "invalidate",
        seed: int = 0,
        **node_options: Any,
    ) -> None:
        self.redis = client if client is not None else connect(url)
        self.namespace = f"panel-{secrets.token_hex(4)}"
        self.strategy = strategy
        self.options = dict(node_options)
        self.events: list[Event] = []
        self._t0 = time.monotonic()
        self._events_lock = threading.Lock()
        self._store = RedisStore(self.redis, self.namespace)
        rng = random.Random(seed)
        self.gates: dict[str, Gate] = {}
        self.nodes: list[CacheNode] = []
        try:
            for name in node_names(n):
                self.nodes.append(self._start(name, strategy, rng, node_options))
        except BaseException:
            self.close()
            raise

    def _start(
        self, name: str, strategy: str, rng: random.Random, options: dict[str, Any]
    ) -> CacheNode:
        """One node, subscribed through its gate."""
        inner = RedisBus(self.redis, channel(self.namespace), name=f"cachelab-panel-{name}")
        gate = Gate(inner, self.namespace, rng)
        self.gates[name] = gate
        return CacheNode(
            self.redis,
            name=name,
            namespace=self.namespace,
            strategy=strategy,
            bus=gate,
            events=self._record,
            **options,
        )

    def _record(self, node: str, kind: str, key: str, version: int) -> None:
        """The node event hook: append (under the node's lock, so keep it short)."""
        with self._events_lock:
            self.events.append(Event(time.monotonic() - self._t0, kind, node, key, version))

    def node(self, name: str) -> CacheNode:
        """The node called ``name``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def names(self) -> list[str]:
        """The node names, in order."""
        return [node.name for node in self.nodes]

    def read(self, name: str, key: str) -> Any:
        """Read ``key`` on node ``name``, recording the read with the version it saw."""
        node = self.node(name)
        value = node.get(key)
        version = node.snapshot().get(key, (None, 0))[1]
        self._record(
            name, "stale_read" if version < self.store_version(key) else "read", key, version
        )
        return value

    def set_cut(self, name: str, cut: bool) -> None:
        """Cut node ``name`` off from the messages, or heal it."""
        self.gates[name].set_cut(cut)
        self._record(name, "partition" if cut else "heal", "", 0)

    def drop_next(self, name: str) -> None:
        """Lose the next message on its way to node ``name``."""
        self.gates[name].drop_next = True

    def store_version(self, key: str) -> int:
        """The version of ``key`` in Redis."""
        reply = self._store.read(key)
        return reply.version if reply.value is not None else 0

    def rows(self) -> list[dict[str, Any]]:
        """One dict per node: name, cache, stats and whether it is cut off."""
        return [
            {
                "name": node.name,
                "cache": node.snapshot(),
                "stats": node.stats.to_dict(),
                "cut": self.gates[node.name].cut,
                "dropped": self.gates[node.name].dropped,
            }
            for node in self.nodes
        ]

    def set_network(self, delay: float, loss: float) -> None:
        """Delay (seconds) and loss (0..1) for every node's incoming messages."""
        for gate in self.gates.values():
            gate.delay, gate.loss = delay, loss

    def write(self, name: str, key: str, value: Any) -> int:
        """Write through node ``name``; return the version Redis gave the write."""
        self.node(name).set(key, value)
        version = self.node(name).snapshot().get(key, (None, 0))[1]
        self._record(name, "write", key, version)
        return version

    def settle(self, timeout: float = 5.0) -> bool:
        """True once every node not cut off has handled every message published so far."""
        live = [n for n in self.nodes if not self.gates[n.name].cut]
        if not live:
            return True
        resend = 0.25 + max(g.delay for g in self.gates.values())  # a marker's own delay too

        def synced(nonce: str) -> bool:
            return all(n._synced(nonce) for n in live)

        return settle_markers(live[0]._publish_sync, synced, timeout, resend=resend)

    @property
    def trace(self) -> list[Event]:
        """A copy of the events so far."""
        with self._events_lock:
            return list(self.events)

    def close(self) -> None:
        """Stop every node's listener, then wait for them."""
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            node.join()

    def __enter__(self) -> LiveCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
