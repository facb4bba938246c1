"""cachelab: a near cache kept coherent through Redis, and a lab that shows why.

The public names load on first use (PEP 562): ``import cachelab`` costs next to nothing,
and ``import cachelab.core``, the protocol core, needs neither redis-py nor fakeredis.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cachelab.async_node import AsyncCacheNode
    from cachelab.auth import AuthenticationMismatch
    from cachelab.backends import BackendUnavailable, connect
    from cachelab.cluster import Cluster
    from cachelab.coherence import STRATEGIES, Strategy
    from cachelab.contract import StripeMismatch, TransportMismatch
    from cachelab.errors import CachelabError, MissingExtra
    from cachelab.messages import ABSENT, NO_VALUE, InvalidMessage, Message
    from cachelab.node import CacheNode, ReentrantLoad
    from cachelab.stats import NodeStats
    from cachelab.stripes import StripedNode
    from cachelab.tracking import TrackingNode
    from cachelab.tracking_redis import TrackingUnsupported

_WHERE = {
    "ABSENT": "cachelab.messages",
    "NO_VALUE": "cachelab.messages",
    "STRATEGIES": "cachelab.coherence",
    "AsyncCacheNode": "cachelab.async_node",
    "AuthenticationMismatch": "cachelab.auth",
    "BackendUnavailable": "cachelab.backends",
    "CacheNode": "cachelab.node",
    "CachelabError": "cachelab.errors",
    "Cluster": "cachelab.cluster",
    "InvalidMessage": "cachelab.messages",
    "Message": "cachelab.messages",
    "MissingExtra": "cachelab.errors",
    "NodeStats": "cachelab.stats",
    "ReentrantLoad": "cachelab.node",
    "StripeMismatch": "cachelab.contract",
    "StripedNode": "cachelab.stripes",
    "TrackingNode": "cachelab.tracking",
    "TrackingUnsupported": "cachelab.tracking_redis",
    "Strategy": "cachelab.coherence",
    "TransportMismatch": "cachelab.contract",
    "connect": "cachelab.backends",
}
"""Where each public name lives: imported from there on first use."""

_DEPRECATED = {
    "Flight": ("cachelab.core", "Ticket", "a load's ticket is the core's, not the API's"),
}
"""Names that left the public API: still there, with a warning, until the next minor version."""

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
    "InvalidMessage",
    "Message",
    "MissingExtra",
    "NodeStats",
    "ReentrantLoad",
    "StripeMismatch",
    "StripedNode",
    "Strategy",
    "TrackingNode",
    "TrackingUnsupported",
    "TransportMismatch",
    "connect",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use."""
    where = _WHERE.get(name)
    if where is None and name in _DEPRECATED:
        where, now, why = _DEPRECATED[name]
        message = f"cachelab.{name} is deprecated ({why}); it goes in 0.2"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), now)
    if where is None:
        raise AttributeError(f"module 'cachelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
