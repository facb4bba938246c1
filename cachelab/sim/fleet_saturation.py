"""Where one Redis saturates: the write rate at which the busiest shard's CPU reaches 1.

``saturation`` bisects the write rate on the fleet model (in log space, same seed at
every step), so it also holds where the cost of a write depends on the rate: under
tracking a faster writer leaves fewer readers between two writes of a key.
``cost_per_write`` gives the analytic side: a shard saturates at ``1 / cost``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from cachelab.sim.fleet import Fleet
from cachelab.sim.fleet_calibration import Calibration


class Saturation(NamedTuple):
    """The write rate that fills the busiest shard, and what a write cost there."""

    mode: str
    nodes: int
    write_rate: float  # writes/s at utilisation 1
    messages_per_write: float
    cost_us: float  # the busiest shard's CPU per write of the whole fleet, at that rate


def cost_per_write(calibration: Calibration, mode: str, deliveries: float) -> float:
    """Server seconds for one write that reaches ``deliveries`` nodes (no batching)."""
    if mode == "tracking":
        return (calibration.publish_us + deliveries * calibration.invalidation_us) * 1e-6
    return (calibration.publish_us + calibration.script_us
            + deliveries * calibration.delivery_us) * 1e-6


def _busiest(mode: str, nodes: int, rate: float, writes: int, options: dict[str, Any]) -> float:
    """The busiest shard's utilisation at ``rate`` writes/s, over about ``writes`` writes."""
    fleet = Fleet(nodes, mode=mode, write_rate=rate, samples=0, max_backlog=1e9, **options)
    return fleet.run(writes / rate, detail=False).busiest


def saturation(
    mode: str = "broadcast",
    nodes: int = 1000,
    *,
    writes: int = 2000,
    tolerance: float = 0.005,
    **options: Any,
) -> Saturation:
    """Bisect the write rate at which the busiest shard's utilisation is 1.

    ``options`` go to ``Fleet`` (calibration, stripes, shards, read_rate, zipf, batch...);
    each step runs about ``writes`` writes. The answer is within ``tolerance`` (relative).
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), not {tolerance!r}")
    low, high = _bracket(mode, nodes, writes, options)
    while high / low > 1 + tolerance:
        middle = (low * high) ** 0.5
        low, high = ((middle, high) if _busiest(mode, nodes, middle, writes, options) < 1
                     else (low, middle))
    return _at(mode, nodes, (low * high) ** 0.5, writes, options)


def _bracket(mode: str, nodes: int, writes: int, options: dict[str, Any]) -> tuple[float, float]:
    """Two write rates, the busiest shard below 1 at the first and at or above it at the second."""
    rate = 1000.0
    use = _busiest(mode, nodes, rate, writes, options)
    step = 4.0 if use < 1 else 0.25
    while True:
        nxt = rate * step
        nxt_use = _busiest(mode, nodes, nxt, writes, options)
        if (use < 1) != (nxt_use < 1):
            return (rate, nxt) if use < 1 else (nxt, rate)
        if not 1e-3 < nxt < 1e9:
            raise ValueError(f"no saturation between 0.001 and 1e9 writes/s for mode {mode!r}")
        rate, use = nxt, nxt_use


def _at(mode: str, nodes: int, rate: float, writes: int, options: dict[str, Any]) -> Saturation:
    """The saturation point at ``rate``, with the run's messages per write and cost."""
    fleet = Fleet(nodes, mode=mode, write_rate=rate, samples=0, max_backlog=1e9, **options)
    result = fleet.run(writes / rate, detail=False)
    return Saturation(mode, nodes, rate, result.messages_per_write, result.busiest / rate * 1e6)


def saturation_table(
    modes: Iterable[str], node_counts: Iterable[int], **options: Any
) -> list[Saturation]:
    """``saturation`` for every mode and node count (options as for ``saturation``)."""
    counts = list(node_counts)
    return [saturation(mode, n, **options) for mode in modes for n in counts]
