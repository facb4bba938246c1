"""What one run of the fleet model measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FleetResult:
    """What a fleet run measured (times in seconds, rates per second)."""

    mode: str
    nodes: int
    write_rate: float
    seconds: float  # virtual seconds simulated (less than asked when saturated)
    writes: int
    publishes: int
    deliveries: int
    utilisation: tuple[float, ...]  # per shard: CPU seconds asked per second
    queue_p50: float
    queue_p99: float
    staleness_p50: float
    staleness_p99: float
    batch_wait_p99: float  # 0 without batching
    saturated: bool
    hit_rate: float  # one node's reads served locally (Che), nan when not computed
    server_reads_per_s: float  # the fleet's reads that miss locally and reach Redis

    @property
    def messages_per_write(self) -> float:
        """Deliveries per write: messages the servers sent to nodes."""
        return self.deliveries / self.writes if self.writes else 0.0

    @property
    def publishes_per_s(self) -> float:
        """Messages published (or invalidation fan-outs started) per second."""
        return self.publishes / self.seconds if self.seconds else 0.0

    @property
    def busiest(self) -> float:
        """The utilisation of the busiest shard."""
        return max(self.utilisation)

    def row(self) -> dict[str, Any]:
        """The figures as a flat dict, for tables."""
        return {"mode": self.mode, "nodes": self.nodes, "write_rate": self.write_rate,
                "messages_per_write": self.messages_per_write,
                "publishes_per_s": self.publishes_per_s, "busiest": self.busiest,
                "queue_p99_ms": self.queue_p99 * 1e3,
                "staleness_p50_ms": self.staleness_p50 * 1e3,
                "staleness_p99_ms": self.staleness_p99 * 1e3, "saturated": self.saturated}
