"""ShardedBus: a namespace's subscription on a Redis Cluster, by sharded pub/sub.

The write scripts SPUBLISH on the namespace's channel, whose hash tag is the namespace's,
so only the shard that owns that slot delivers the message. The bus therefore SSUBSCRIBEs
on a plain connection to that shard's master, found in the cluster client's slot table.

Whatever moves the slot loses the subscription: a failover or a killed master drops the
connection; a migration makes the server unsubscribe us (``bus.SlotMoved``). Either way
the listener thread's rules apply (the node stops trusting, then resubscribes and
repairs); before subscribing again the bus asks the cluster who owns the slot now.

The subscription has a connection pool of its own: the cluster client resets its pools
when a shard fails, and a shared connection would drop the other stripes' subscriptions
too, making them repair for nothing.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

from cachelab.bus import NO_RETRY, RedisBus, private_client


class ShardedBus(RedisBus):
    """RedisBus on a Redis Cluster: SSUBSCRIBE at the master that owns the channel's slot."""

    def __init__(self, cluster: RedisCluster, channel: str, **options: Any) -> None:
        super().__init__(cluster, channel, **options)  # type: ignore[arg-type]
        self.cluster = cluster
        self._lost_once = False  # touched by the listener thread only
        self._shard: redis.Redis | None = None  # likewise

    def _subscribe(self) -> None:
        """A fresh PubSub at the slot's current owner, on the channel and the beat channel."""
        if self._lost_once:  # the slot table may be stale: a subscription was lost
            self.cluster.nodes_manager.initialize()
        self._lost_once = True
        node = self.cluster.get_node_from_key(self.channel)  # type: ignore[no-untyped-call]
        self._shard = private_client(self.cluster.get_redis_connection(node), retry=NO_RETRY)
        self._pubsub = self._shard.pubsub()
        self.subscription.restart()
        self._pubsub.ssubscribe(self.channel, self.beat_channel)

    def _private(self, client: redis.Redis) -> None:
        """None: each subscription gets a client of the slot's owner (``_subscribe``)."""
        return None

    def _drop(self) -> None:
        """Close the PubSub, then its pool; errors no longer matter."""
        super()._drop()
        shard, self._shard = self._shard, None
        if shard is not None:
            shard.close()

