"""A Prometheus collector over cachelab nodes (needs ``prometheus_client``).

```python
from prometheus_client import REGISTRY, start_http_server
from cachelab.metrics.prometheus import NodeCollector

NodeCollector([node]).register(REGISTRY)
start_http_server(9100)           # curl localhost:9100/metrics
```

The series, labelled ``node`` and ``namespace``, are listed in ``cachelab.metrics``. They
are read from ``node.stats`` at each scrape; nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from cachelab.extras import needs_extra

with needs_extra("metrics", __name__):
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
    from prometheus_client.registry import Collector, CollectorRegistry

from cachelab.metrics import COUNTERS, GAUGES, LAG_HELP, SAMPLED, lag_of, node_list, samples
from cachelab.metrics import snapshot as stats_of

_LABELS = ["node", "namespace"]


class NodeCollector(Collector):
    """Yields each node's counters, gauges, sampled staleness and propagation lag."""

    def __init__(self, nodes: Iterable[Any] | Any) -> None:
        self.nodes = node_list(nodes)

    def register(self, registry: CollectorRegistry) -> NodeCollector:
        """Register on ``registry`` (``prometheus_client.REGISTRY`` for the default one)."""
        registry.register(self)
        return self

    def collect(self) -> Iterator[Metric]:
        taken = stats_of(self.nodes)
        for field, help in COUNTERS:
            counter = CounterMetricFamily(f"cachelab_{field}", help, labels=_LABELS)
            for node, stats in taken:
                counter.add_metric([node.name, node.namespace], getattr(stats, field))
            yield counter
        for field, help in GAUGES:
            gauge = GaugeMetricFamily(f"cachelab_{field}", help, labels=_LABELS)
            for node, stats in taken:
                gauge.add_metric([node.name, node.namespace], getattr(stats, field))
            yield gauge
        sampled = [(node, stats) for node, stats in taken if samples(node)]
        if sampled:
            yield from _staleness(sampled)
        lags = [(node, lag) for node, _ in taken if (lag := lag_of(node)) is not None]
        if lags:
            yield from _lag(lags)


def _staleness(sampled: list[tuple[Any, Any]]) -> Iterator[Metric]:
    """The sampled staleness of the nodes that run ``verify=``."""
    for field, help in SAMPLED:
        counter = CounterMetricFamily(f"cachelab_{field}", help, labels=_LABELS)
        for node, stats in sampled:
            counter.add_metric([node.name, node.namespace], getattr(stats, field))
        yield counter
    estimate = GaugeMetricFamily(
        "cachelab_stale_estimate", "Estimated stale fraction of hits (verify=).", labels=_LABELS
    )
    low = GaugeMetricFamily(
        "cachelab_stale_estimate_low", "Lower bound, 95 % Wilson interval.", labels=_LABELS
    )
    high = GaugeMetricFamily(
        "cachelab_stale_estimate_high", "Upper bound, 95 % Wilson interval.", labels=_LABELS
    )
    for node, stats in sampled:
        values = [node.name, node.namespace]
        bounds = stats.stale_interval
        estimate.add_metric(values, stats.stale_estimate)
        low.add_metric(values, bounds[0])
        high.add_metric(values, bounds[1])
    yield from (estimate, low, high)


def _lag(lags: list[tuple[Any, Any]]) -> Iterator[Metric]:
    """The heartbeat round trips of the nodes that have one."""
    summary = SummaryMetricFamily("cachelab_propagation_lag_seconds", LAG_HELP, labels=_LABELS)
    last = GaugeMetricFamily(
        "cachelab_propagation_lag_last_seconds", "The latest heartbeat round trip.", labels=_LABELS
    )
    longest = GaugeMetricFamily(
        "cachelab_propagation_lag_max_seconds",
        "The longest of the last 64 heartbeat round trips.",
        labels=_LABELS,
    )
    for node, lag in lags:
        values = [node.name, node.namespace]
        summary.add_metric(values, count_value=lag.count, sum_value=lag.total)
        if lag.last is not None and lag.max is not None:
            last.add_metric(values, lag.last)
            longest.add_metric(values, lag.max)
    yield from (summary, last, longest)
