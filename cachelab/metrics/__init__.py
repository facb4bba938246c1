"""Each node's counters for Prometheus or OpenTelemetry: ``pip install 'cachelab[metrics]'``.

``cachelab.metrics.prometheus.NodeCollector(nodes)`` is a ``prometheus_client`` collector;
``cachelab.metrics.otel.instrument(meter, nodes)`` registers observable instruments on an
OpenTelemetry ``Meter``. Both read ``node.stats`` (and ``node.propagation_lag``) when
scraped, and label every series with the node's ``name`` and ``namespace``. This package
imports neither library; each module imports its own, so ``import cachelab`` needs neither.

What is exported (Prometheus name; OpenTelemetry uses dots: ``cachelab.hits``):

- counters ``cachelab_<field>_total`` for the ``NodeStats`` fields in ``COUNTERS``;
- gauges ``cachelab_entries`` and ``cachelab_suspects``;
- with ``verify=`` only (the node has a sampler): ``cachelab_verified_total``,
  ``cachelab_verified_stale_total``, and the gauges ``cachelab_stale_estimate``,
  ``cachelab_stale_estimate_low`` and ``cachelab_stale_estimate_high`` (95 %, Wilson);
- when the node has a heartbeat: the propagation lag (``CacheNode.propagation_lag``): the
  summary ``cachelab_propagation_lag_seconds`` (``_count``, ``_sum``: every beat since the
  start), and the gauges ``cachelab_propagation_lag_last_seconds`` and
  ``cachelab_propagation_lag_max_seconds`` (the longest of the last 64 beats).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cachelab.stats import LagStats, NodeStats

COUNTERS: tuple[tuple[str, str], ...] = (
    ("hits", "Reads served from the local cache."),
    ("misses", "Reads the local cache could not serve."),
    ("invalidations_received", "Messages that dropped or replaced a local entry."),
    ("stale_fills_rejected", "Fills refused because a newer version overtook them."),
    ("gaps", "Messages that showed lost or unexpected sequence numbers."),
    ("repair_checks", "Round trips that revalidated suspect entries."),
    ("repair_kept", "Suspect entries found current and kept."),
    ("repair_dropped", "Suspect entries found changed and dropped."),
    ("flushes", "Times the whole local cache was dropped."),
    ("reconnects", "Subscriptions re-established after a loss."),
    ("evictions", "Entries pushed out of the local LRU."),
    ("messages_ignored", "Messages that changed nothing: malformed, outdated or forged."),
)
"""The counters every node exports: (NodeStats field, help)."""

GAUGES: tuple[tuple[str, str], ...] = (
    ("entries", "Entries the local cache holds and trusts."),
    ("suspects", "Entries awaiting repair."),
)

SAMPLED: tuple[tuple[str, str], ...] = (
    ("verified", "Sampled hits judged against the store (verify=)."),
    ("verified_stale", "Sampled hits found stale (verify=)."),
)

LAG_HELP = (
    "Heartbeat round trip: from just before this node publishes a beat to its arrival on "
    "the node's own subscription (not peer-to-peer)."
)


def node_list(nodes: Any) -> tuple[Any, ...]:
    """One node or an iterable of them, each named uniquely within its namespace."""
    listed = (nodes,) if hasattr(nodes, "stats") else tuple(nodes)
    seen: set[tuple[str, str]] = set()
    for node in listed:
        if not hasattr(node, "stats"):
            raise TypeError(f"expected cachelab nodes, not {type(node).__name__}")
        label = (node.name, node.namespace)
        if label in seen:
            raise ValueError(f"two nodes named {node.name!r} in namespace {node.namespace!r}")
        seen.add(label)
    return listed


def labels(node: Any) -> dict[str, str]:
    """The labels (attributes) of a node's series."""
    return {"node": node.name, "namespace": node.namespace}


def samples(node: Any) -> bool:
    """Whether the node samples its hits (``verify=``): only then is staleness exported."""
    return getattr(node, "sampler", None) is not None


def lag_of(node: Any) -> LagStats | None:
    """The node's propagation lag, or None when it has no heartbeat to measure it with."""
    lag = getattr(node, "propagation_lag", None)
    return lag if isinstance(lag, LagStats) else None


def snapshot(nodes: Iterable[Any]) -> list[tuple[Any, NodeStats]]:
    """Each node with one snapshot of its stats."""
    return [(node, node.stats) for node in nodes]
