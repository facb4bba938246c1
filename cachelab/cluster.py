"""Cluster: N nodes on one backend, settle(), and history recording."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from cachelab.backends import Client, connect
from cachelab.history import Op, Recorder
from cachelab.node import CacheNode
from cachelab.stripes import StripedNode, default_stripes, make_node


def node_names(n: int) -> list[str]:
    """``a``, ``b``, ... ``z``, then ``n26``, ``n27``, ..."""
    letters = string.ascii_lowercase
    return [letters[i] if i < len(letters) else f"n{i}" for i in range(n)]


class Cluster:
    """``n`` CacheNodes sharing one Redis and one namespace (a fresh one by default).

    ``url`` may be a seed list of a Redis Cluster's ``host:port`` (or give ``client=``
    from ``connect(url, cluster=True)``). With ``stripes`` (default: 16 on a Redis
    Cluster, else 1) above 1, each member is a ``StripedNode``.
    """

    def __init__(
        self,
        n: int,
        url: str | list[str] | None = None,
        strategy: str = "invalidate",
        *,
        namespace: str | None = None,
        record: bool = False,
        client: Client | None = None,
        stripes: int | None = None,
        **node_options: Any,
    ) -> None:
        if type(n) is not int or n < 1:
            raise ValueError(f"a cluster needs a positive int of nodes, not {n!r}")
        if record and strategy == "tracking":
            raise ValueError(
                "record=True needs versions, which strategy 'tracking' lacks: record its reads "
                "and writes yourself, with each value as its version (see benchmarks/faults.py)"
            )
        self._owns_client = client is None
        self.redis: Client = client if client is not None else _connect(url)
        self.namespace = namespace or f"cluster-{secrets.token_hex(4)}"
        self.recorder = Recorder() if record else None
        self.stripes = default_stripes(self.redis) if stripes is None else stripes
        self.nodes: list[CacheNode | StripedNode] = []
        try:
            for name in node_names(n):
                self.nodes.append(self._node(name, strategy, node_options))
        except BaseException:
            self.close()
            raise

    def _node(self, name: str, strategy: str, options: dict[str, Any]) -> CacheNode | StripedNode:
        """Start one member node."""
        return make_node(
            self.redis,
            stripes=self.stripes,
            name=name,
            namespace=self.namespace,
            strategy=strategy,
            recorder=self.recorder,
            **options,
        )

    def __getitem__(self, name: str) -> CacheNode | StripedNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def history(self) -> list[Op]:
        """Every operation recorded (``record=True``), with monotonic times."""
        if self.recorder is None:
            raise ValueError("this cluster does not record; create it with record=True")
        return self.recorder.history

    def settle(self, timeout: float = 5.0) -> bool:
        """True once every node has handled every message published before the call."""
        nodes = self.nodes
        if not nodes:
            return True
        senders = nodes if nodes[0].strategy.own_marker else nodes[:1]

        def publish(nonce: str) -> None:
            for node in senders:
                node._publish_sync(nonce)

        return settle_markers(publish, lambda nonce: all(n._synced(nonce) for n in nodes), timeout)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Every node's counters, by node name."""
        return {node.name: node.stats.to_dict() for node in self.nodes}

    def close(self) -> None:
        """Stop every node's listener, wait for them all, and close a client it opened."""
        for node in self.nodes:
            node.stop()
        for node in self.nodes:
            node.join()
        if self._owns_client:
            self.redis.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def settle_markers(
    publish: Callable[[str], None],
    synced: Callable[[str], bool],
    timeout: float,
    *,
    resend: float = 0.25,
    poll: float = 0.002,
) -> bool:
    """The settle loop: ``publish`` a fresh sync marker and poll ``synced`` until it holds,
    publishing a new one every ``resend`` seconds (one sent while a subscription is down
    reaches nobody); False once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        nonce = secrets.token_hex(8)
        publish(nonce)
        until = min(deadline, time.monotonic() + resend)
        while time.monotonic() < until:
            if synced(nonce):
                return True
            time.sleep(poll)
        if time.monotonic() >= deadline:
            return False


def _connect(url: str | list[str] | None) -> Client:
    """A client for ``url``: a list is a Redis Cluster's seeds."""
    return connect(url) if url is None or isinstance(url, str) else connect(url, cluster=True)
