"""cachelab: a near cache kept coherent through Redis, and a lab that shows why."""

from cachelab.async_node import AsyncCacheNode
from cachelab.auth import AuthenticationMismatch
from cachelab.backends import BackendUnavailable, connect
from cachelab.cluster import Cluster
from cachelab.coherence import STRATEGIES, Strategy
from cachelab.contract import StripeMismatch, TransportMismatch
from cachelab.errors import CachelabError, MissingExtra
from cachelab.messages import ABSENT, NO_VALUE, InvalidMessage, Message
from cachelab.node import CacheNode, Flight, ReentrantLoad
from cachelab.stats import NodeStats
from cachelab.stripes import StripedNode
from cachelab.tracking import TrackingNode
from cachelab.tracking_redis import TrackingUnsupported

__all__ = [
    "ABSENT",
    "NO_VALUE",
    "STRATEGIES",
    "AsyncCacheNode",
    "AuthenticationMismatch",
    "BackendUnavailable",
    "CacheNode",
    "CachelabError",
    "Cluster",
    "Flight",
    "InvalidMessage",
    "Message",
    "MissingExtra",
    "NodeStats",
    "ReentrantLoad",
    "StripeMismatch",
    "StripedNode",
    "TrackingNode",
    "TrackingUnsupported",
    "Strategy",
    "TransportMismatch",
    "connect",
]
__version__ = "0.1.0"
