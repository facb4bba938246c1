"""ShardedBus: a namespace's subscription on a Redis Cluster, by sharded pub/sub.

The write scripts SPUBLISH on the namespace's channel, whose hash tag is the namespace's,
so only the shard that owns that slot delivers the message. The bus therefore SSUBSCRIBEs
on a plain connection to that shard's master, found in the cluster client's slot table.

Whatever moves the slot loses the subscription: a failover or a killed master drops the
connection; a migration makes the server unsubscribe us (``bus.SlotMoved``). Either way
the listener thread's rules apply (the node stops trusting, then resubscribes and
repairs); before subscribing again the bus asks the cluster who owns the slot now.
"""

from __future__ import annotations

from typing import Any

from redis.cluster import RedisCluster

from cachelab.bus import RedisBus


class ShardedBus(RedisBus):
    """RedisBus on a Redis Cluster: SSUBSCRIBE at the master that owns the channel's slot."""

    def __init__(self, cluster: RedisCluster, channel: str, **options: Any) -> None:
        super().__init__(cluster, channel, **options)  # type: ignore[arg-type]
        self.cluster = cluster
        self._lost_once = False  # touched by the listener thread only

    def _subscribe(self) -> None:
        """A fresh PubSub at the slot's current owner, on the channel and the beat channel."""
        if self._lost_once:  # the slot table may be stale: a subscription was lost
            self.cluster.nodes_manager.initialize()
        self._lost_once = True
        node = self.cluster.get_node_from_key(self.channel)  # type: ignore[no-untyped-call]
        shard = self.cluster.get_redis_connection(node)
        self._pubsub = shard.pubsub()  # type: ignore[no-untyped-call]
        self.subscription.restart()
        self._pubsub.ssubscribe(self.channel, self.beat_channel)
