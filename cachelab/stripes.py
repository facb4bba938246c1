"""A namespace striped over S stripes, so that one namespace can span a Redis Cluster.

One namespace is one hash tag, so one slot, so one shard: it cannot outgrow one server.
A striped namespace ``ns`` is S namespaces ``ns#0`` ... ``ns#S-1``, each with its own hash
tag, sequence, incarnation, channel, heartbeat and repair, as Hazelcast keeps metadata
per partition. A key's stripe is a stable hash of the key (CRC-32, so every process and
every language agrees), and a key lives in its stripe alone.

``StripedNode`` is S ``CacheNode``s behind one face: one per stripe, each the whole
protocol, unchanged. So a message lost on one shard makes a gap in that stripe only, and
repair touches that stripe's entries only. On a Redis Cluster each stripe subscribes by
sharded pub/sub at the shard that owns it (``shardbus.ShardedBus``).

The stripe count is part of the namespace: ``{ns}:meta`` records it, and a node that
gives another count, or none, is refused (``store.StripeMismatch``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any
from zlib import crc32

import redis
from redis.cluster import RedisCluster

from cachelab import validate
from cachelab.backends import Client
from cachelab.coherence import Strategy, strategy_for
from cachelab.core import Switches
from cachelab.node import CacheNode
from cachelab.shell import NodeFace
from cachelab.stats import LagStats, NodeStats
from cachelab.store import script_error

__all__ = [
    "CLUSTER_STRIPES",
    "MAX_STRIPES",
    "StripeIndex",
    "StripedNode",
    "claim_stripes",
    "default_stripes",
    "make_node",
    "stripe_namespace",
    "stripe_of",
]

MAX_STRIPES = 1024
CLUSTER_STRIPES = 16
"""The stripe count on a Redis Cluster when none is given: fixed, never read off the
topology, since every node of a namespace must agree on it for good."""
_MAX_NAMESPACE = validate.MAX_NAMESPACE - len(f"#{MAX_STRIPES - 1}")  # a stripe's is longer

# KEYS: {ns}:meta. ARGV: the stripe count. The namespace is claimed once, for good.
_CLAIM = """
local m = redis.call('HMGET', KEYS[1], 'inc', 'striped')
if m[2] then
  if m[2] ~= ARGV[1] then
    local why = 'the namespace is striped over ' .. m[2] .. ' stripes, not ' .. ARGV[1]
    return redis.error_reply('cachelab-stripes: ' .. why)
  end
  return 1
end
if m[1] then return redis.error_reply('cachelab-stripes: the namespace is not striped') end
redis.call('HSET', KEYS[1], 'striped', ARGV[1])
return 1
"""


def stripe_of(key: str, stripes: int) -> int:
    """The stripe of ``key``: CRC-32 of its UTF-8 bytes, modulo ``stripes``."""
    return crc32(key.encode("utf-8")) % stripes


def stripe_namespace(namespace: str, stripe: int, stripes: int) -> str:
    """The namespace of one stripe (the namespace itself when there is one stripe)."""
    return namespace if stripes == 1 else validate.StripeNamespace(f"{namespace}#{stripe}")


def default_stripes(r: object) -> int:
    """The stripe count when none is given: 16 on a Redis Cluster, else 1."""
    return CLUSTER_STRIPES if isinstance(r, RedisCluster) else 1


def claim_stripes(r: Client, namespace: str, stripes: int) -> None:
    """Record ``stripes`` for ``namespace``, or raise StripeMismatch if it differs."""
    try:
        r.eval(_CLAIM, 1, "{" + namespace + "}:meta", str(stripes))
    except redis.ResponseError as exc:
        raise script_error(exc, namespace) from None


def make_node(r: Client, *, stripes: int | None = None, **options: Any) -> CacheNode | StripedNode:
    """A node of ``options`` over ``stripes`` stripes (by default ``default_stripes(r)``):
    a plain CacheNode for one stripe, else a StripedNode."""
    count = default_stripes(r) if stripes is None else stripes
    if count == 1:
        return node_class(options.get("strategy", "invalidate"))(r, **options)
    return StripedNode(r, stripes=count, **options)


def node_class(strategy: str | Strategy) -> type[CacheNode]:
    """The node that runs ``strategy``: a TrackingNode for keys anyone writes (``tracking``),
    a CacheNode for the versioned strategies."""
    if strategy_for(strategy).store_versions:
        return CacheNode
    from cachelab.tracking import TrackingNode  # it needs a real server's tracking: on demand

    return TrackingNode


class StripedNode(NodeFace):
    """A near cache of a namespace striped over ``stripes`` stripes: one CacheNode each.

    Takes ``CacheNode``'s arguments; ``max_entries`` is shared out among the stripes.
    ``stripes`` defaults to 16 on a Redis Cluster (``connect(..., cluster=True)``), else 1.
    Strategies ``invalidate``, ``update`` and ``none`` stripe; ``tracking`` and ``stream``
    do not.
    """

    def __init__(
        self,
        r: Client,
        name: str = "node",
        namespace: str = "cachelab",
        strategy: str | Strategy = "invalidate",
        max_entries: int = 10_000,
        ttl: float | None = None,
        *,
        stripes: int | None = None,
        **options: Any,
    ) -> None:
        count = default_stripes(r) if stripes is None else validate.count("stripes", stripes)
        _check(namespace, count, strategy)
        _check_shared(count, options)
        validate.count("max_entries", max_entries)
        if count > 1:
            claim_stripes(r, namespace, count)
        self.name, self.namespace, self.stripes = name, namespace, count
        self.nodes: list[CacheNode] = []
        share = max(1, math.ceil(max_entries / count))
        try:
            for stripe in range(count):
                inner = stripe_namespace(namespace, stripe, count)
                self.nodes.append(CacheNode(r, name, inner, strategy, share, ttl, **options))
        except BaseException:
            self.close()
            raise
        self.strategy = self.nodes[0].strategy
        self.id = self.nodes[0].id
        self._gets = [node.get for node in self.nodes]
        self._stripe = StripeIndex(count, max(10_000, 4 * max_entries))

    def node_of(self, key: str) -> CacheNode:
        """The stripe's node that holds ``key``."""
        validate.key(key)
        return self.nodes[stripe_of(key, self.stripes)]

    # -- the read and write paths, by stripe ------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key`` (see ``CacheNode.get``)."""
        try:
            get = self._gets[self._stripe[key]]  # the hit path: one dict lookup more
        except (AttributeError, TypeError, UnicodeEncodeError):  # not a str key: as a node says
            get = self.node_of(key).get
        return get(key, default)

    def peek(self, key: str, default: Any = None) -> Any:
        """The local value of ``key``, or ``default`` (see ``CacheNode.peek``)."""
        return self.node_of(key).peek(key, default)

    def get_or_load(self, key: str, loader: Callable[..., Any]) -> Any:
        """Return the cached value, else Redis's, else ``loader()``'s."""
        return self.node_of(key).get_or_load(key, loader)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` in Redis and tell the stripe's subscribers, atomically."""
        self.node_of(key).set(key, value)

    def delete(self, key: str) -> None:
        """Delete ``key`` everywhere."""
        self.node_of(key).delete(key)

    def invalidate(self, key: str) -> None:
        """Drop ``key`` from Redis and every node, after you changed its source of truth."""
        self.node_of(key).invalidate(key)

    # -- the fleet's face ---------------------------------------------------------

    def _publish_sync(self, nonce: str) -> None:
        """Publish a sync marker on every stripe."""
        for node in self.nodes:
            node._publish_sync(nonce)

    def _synced(self, nonce: str) -> bool:
        """Whether every stripe has handled its sync marker ``nonce``."""
        return all(node._synced(nonce) for node in self.nodes)

    def flush(self) -> None:
        """Drop every local entry of every stripe."""
        for node in self.nodes:
            node.flush()

    @property
    def stats(self) -> NodeStats:
        """Every stripe's counters, summed."""
        return sum_stats(node.stats for node in self.nodes)

    def snapshot(self) -> dict[str, tuple[Any, int]]:
        """Every trusted local entry of every stripe as ``key -> (value, version)``."""
        return {key: entry for node in self.nodes for key, entry in node.snapshot().items()}

    @property
    def coherent(self) -> bool:
        """Whether every stripe trusts its local cache (its subscription is up)."""
        return all(node.coherent for node in self.nodes)

    @property
    def switches(self) -> Switches:
        """The safeguards every stripe runs."""
        return self.nodes[0].switches

    @property
    def max_entries(self) -> int:
        """The bound of the local LRUs together."""
        return sum(node.max_entries for node in self.nodes)

    @property
    def propagation_lag(self) -> LagStats | None:
        """The heartbeat round trips of every stripe together (see ``CacheNode``)."""
        lags = [node.propagation_lag for node in self.nodes]
        if any(lag is None for lag in lags):
            return None
        return _merged([lag for lag in lags if lag is not None])

    def close(self) -> None:
        """Stop every stripe's listener and join the threads. Idempotent."""
        self.stop()
        self.join()

    def stop(self) -> None:
        """Stop listening on every stripe, without waiting."""
        for node in self.nodes:
            node.stop()

    def join(self, timeout: float | None = None) -> None:
        """Wait for every stripe's threads to end."""
        for node in self.nodes:
            node.join(timeout)

    def __iter__(self) -> Iterator[CacheNode]:
        return iter(self.nodes)

    def __enter__(self) -> StripedNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        strategy = self.nodes[0].strategy.name if self.nodes else "?"
        return f"<StripedNode {self.name!r} ns={self.namespace!r} {strategy} x{self.stripes}>"


class StripeIndex(dict[str, int]):
    """``key -> stripe``, remembered: a hit costs a dict lookup instead of encoding the key
    and its CRC-32 (most of a striped hit's extra cost); forgotten whole at ``bound`` keys."""

    def __init__(self, stripes: int, bound: int) -> None:
        super().__init__()
        self.stripes = stripes
        self.bound = bound

    def __missing__(self, key: str) -> int:
        if len(self) >= self.bound:
            self.clear()
        stripe = self[key] = crc32(key.encode("utf-8")) % self.stripes
        return stripe


def sum_stats(parts: Any) -> NodeStats:
    """Counters and gauges of several nodes, summed field by field."""
    total: dict[str, int] = {}
    for stats in parts:
        for field, value in vars(stats).items():
            total[field] = total.get(field, 0) + value
    return NodeStats(**total)


def _merged(lags: list[LagStats]) -> LagStats:
    """Several heartbeats' round trips as one."""
    recent = tuple(t for lag in lags for t in lag.recent)[-64:]
    return LagStats(sum(lag.count for lag in lags), sum(lag.total for lag in lags), recent)


def _check_shared(stripes: int, options: dict[str, Any]) -> None:
    """Refuse an object that one node alone can use (each stripe is a node of its own)."""
    if stripes > 1 and options.get("bus") is not None:
        raise ValueError("bus= serves one node; a striped node subscribes once per stripe")
    verify = options.get("verify")
    if stripes > 1 and verify is not None and not isinstance(verify, float | int):
        raise ValueError("verify= must be a fraction on a striped node: each stripe samples")


def _check(namespace: str, stripes: int, strategy: str | Strategy) -> None:
    """Refuse what cannot stripe, saying why."""
    validate.namespace(namespace, _MAX_NAMESPACE)
    if not 1 <= stripes <= MAX_STRIPES:
        raise ValueError(f"stripes must be 1 to {MAX_STRIPES}, not {stripes}")
    name = strategy_for(strategy).name
    if stripes > 1 and name in ("tracking", "stream"):
        raise ValueError(f"strategy {name!r} does not stripe: use 'invalidate', 'update' or 'none'")
