"""OpenTelemetry instruments over cachelab nodes (needs ``opentelemetry-api``).

```python
from opentelemetry import metrics
from cachelab.metrics.otel import instrument

instrument(metrics.get_meter("cachelab"), [node])
```

Observable counters and gauges, named as in ``cachelab.metrics`` with dots
(``cachelab.hits``, ``cachelab.propagation_lag.sum``), with attributes ``node`` and
``namespace``; their callbacks read ``node.stats`` when the SDK's reader collects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cachelab.extras import needs_extra

with needs_extra("metrics", __name__):
    from opentelemetry.metrics import CallbackOptions, Instrument, Meter, Observation

from cachelab.metrics import COUNTERS, GAUGES, LAG_HELP, SAMPLED, labels, lag_of, node_list, samples
from cachelab.stats import LagStats, NodeStats

Callback = Callable[[CallbackOptions], Iterable[Observation]]
_LAG: tuple[tuple[bool, str, str, Callable[[LagStats], float | None], str], ...] = (
    # (a counter, else a gauge; name; unit; what it reads; its description)
    (True, "count", "1", lambda lag: lag.count, "Heartbeat round trips measured."),
    (True, "sum", "s", lambda lag: lag.total, LAG_HELP),
    (False, "last", "s", lambda lag: lag.last, "The latest heartbeat round trip."),
    (False, "max", "s", lambda lag: lag.max, "The longest of the last 64 heartbeat round trips."),
)


def instrument(meter: Meter, nodes: Iterable[Any] | Any) -> list[Instrument]:
    """Register the nodes' instruments on ``meter``; return them."""
    listed = node_list(nodes)
    made: list[Instrument] = []
    for field, help in COUNTERS:
        made.append(
            meter.create_observable_counter(
                f"cachelab.{field}", [_stat(listed, field)], unit="1", description=help
            )
        )
    for field, help in GAUGES:
        made.append(
            meter.create_observable_gauge(
                f"cachelab.{field}", [_stat(listed, field)], unit="1", description=help
            )
        )
    sampled = tuple(node for node in listed if samples(node))
    if sampled:
        for field, help in SAMPLED:
            made.append(
                meter.create_observable_counter(
                    f"cachelab.{field}", [_stat(sampled, field)], unit="1", description=help
                )
            )
        for name, read in (
            ("cachelab.stale_estimate", lambda s: s.stale_estimate),
            ("cachelab.stale_estimate.low", lambda s: s.stale_interval[0]),
            ("cachelab.stale_estimate.high", lambda s: s.stale_interval[1]),
        ):
            made.append(
                meter.create_observable_gauge(
                    name, [_observe(sampled, read)], unit="1", description="verify= (95 %)"
                )
            )
    timed = tuple(node for node in listed if lag_of(node) is not None)
    if timed:
        for counter, name, unit, read, help in _LAG:
            create = meter.create_observable_counter if counter else meter.create_observable_gauge
            made.append(
                create(f"cachelab.propagation_lag.{name}", [_lag(timed, read)], unit, help)
            )
    return made


def _stat(nodes: tuple[Any, ...], field: str) -> Callback:
    """A callback observing one NodeStats field of every node."""
    return _observe(nodes, lambda stats: getattr(stats, field))


def _observe(nodes: tuple[Any, ...], read: Callable[[NodeStats], float]) -> Callback:
    """A callback observing ``read(node.stats)`` for every node."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read(node.stats), labels(node)) for node in nodes]

    return callback


def _lag(nodes: tuple[Any, ...], read: Callable[[LagStats], float | None]) -> Callback:
    """A callback observing ``read(node.propagation_lag)``, once a beat has come back."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        observed = []
        for node in nodes:
            lag = lag_of(node)
            value = None if lag is None or lag.count == 0 else read(lag)
            if value is not None:
                observed.append(Observation(value, labels(node)))
        return observed

    return callback
