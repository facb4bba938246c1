"""Strategy "tracking" in the simulator: real TrackingNodes, the server's tracking modelled."""

from __future__ import annotations

from typing import Any

import pytest

from cachelab.sim import Network, Simulation
from cachelab.sim.network import Fault
from cachelab.sim.result import SimResult
from cachelab.sim.workloads import Request, mix, zipf_picker


def _run(
    strategy: str, n: int = 4, external: float = 0.5, delay: float = 0.0, **options: Any
) -> SimResult:
    sim = Simulation(
        nodes=n,
        strategy=strategy,
        seed=3,
        network=Network(delay=delay),
        ttl=5.0,
        store_latency=0.0,
        progress=False,
        **options,
    )
    return sim.run(workload=mix(4000, n, zipf_picker(200, 1.0), read_ratio=0.9, external=external))


def test_the_nodes_are_real_tracking_nodes() -> None:
    sim = Simulation(nodes=2, strategy="tracking", progress=False)
    result = sim.run(workload=[Request(0.0, 0, "read", "k")])
    assert result.report.reads == 1
    assert set(result.stats) == {"a", "b"}


def test_outside_writes_leave_invalidate_stale_and_tracking_fresh() -> None:
    assert _run("invalidate").report.stale_reads > 0  # nobody tells: stale until the TTL
    assert _run("tracking").report.stale_reads == 0
    assert _run("tracking", bcast=True).report.stale_reads == 0


def test_without_outside_writes_both_are_fresh() -> None:
    assert _run("invalidate", external=0.0).report.stale_reads == 0
    assert _run("tracking", external=0.0).report.stale_reads == 0


@pytest.mark.parametrize("n", [4, 16])
def test_bcast_tells_every_node_and_the_default_mode_only_readers(n: int) -> None:
    default = _run("tracking", n=n)
    bcast = _run("tracking", n=n, bcast=True)
    writes = default.report.writes
    assert bcast.delivered == pytest.approx(writes * n, rel=0.3)  # all but NOLOOP's writer
    assert bcast.delivered < writes * n
    assert default.delivered < bcast.delivered


def test_a_propagation_delay_is_stale_only_within_the_window() -> None:
    report = _run("tracking", delay=0.002).report
    assert report.stale_reads > 0
    assert report.staleness_max <= 0.002 + 1e-9  # never beyond the delay


def test_a_lost_subscription_flushes_and_stays_fresh() -> None:
    faults = [Fault(0.1, "disconnect", node=0, duration=0.05)]
    sim = Simulation(nodes=3, strategy="tracking", seed=1, progress=False, faults=faults)
    sim.network = Network(delay=0.0)  # no propagation window: any stale read is the fault's
    result = sim.run(workload=mix(4000, 3, zipf_picker(100, 1.0), read_ratio=0.9, external=0.5))
    assert result.stats["a"].flushes == 2  # on the loss, and again on the new subscription
    assert result.dropped > 0  # invalidations were sent while it was away
    assert result.report.stale_reads == 0


def test_tracking_options_are_checked() -> None:
    with pytest.raises(TypeError, match="options of strategy 'tracking'"):
        Simulation(strategy="invalidate", bcast=True)
    with pytest.raises(ValueError, match="without database"):
        Simulation(strategy="tracking", database=True)
    with pytest.raises(ValueError, match="noloop=True needs bcast=True"):
        Simulation(strategy="tracking", noloop=True, progress=False).run(
            workload=[Request(0.0, 0, "read", "k")]
        )


@pytest.mark.parametrize("strategy", ["invalidate", "update"])
def test_a_plain_outside_writer_is_stale_until_the_ttl_and_no_longer(strategy: str) -> None:
    """A writer that knows nothing of cachelab takes no number: only the TTL ends it."""
    ttl = 0.2
    result = Simulation(
        nodes=3, strategy=strategy, seed=2, ttl=ttl, outside="plain", progress=False
    ).run(workload=mix(6000, 3, zipf_picker(50, 1.0), read_ratio=0.9, external=0.5))
    report = result.report
    assert report.staleness_max > 0.5 * ttl  # well past any propagation window
    assert report.staleness_max <= ttl  # the bound


def test_a_plain_outside_writer_is_heard_by_tracking() -> None:
    sim = Simulation(nodes=3, strategy="tracking", seed=2, outside="plain", progress=False)
    sim.network = Network(delay=0.0)
    result = sim.run(workload=mix(6000, 3, zipf_picker(50, 1.0), read_ratio=0.9, external=0.5))
    assert result.report.stale_reads == 0


def test_a_script_writer_without_its_message_is_caught_by_the_sequence() -> None:
    """The outside writer runs cachelab's script but publishes nothing: the next message's
    number shows the gap, long before any TTL."""
    sim = Simulation(nodes=3, strategy="invalidate", seed=2, ttl=10.0, progress=False)
    result = sim.run(workload=mix(6000, 3, zipf_picker(50, 1.0), read_ratio=0.9, external=0.5))
    assert result.report.staleness_max < 0.1
    assert sum(stats.gaps for stats in result.stats.values()) > 0


def test_plain_outside_runs_take_writes_only() -> None:
    sim = Simulation(nodes=2, outside="plain", progress=False)
    with pytest.raises(ValueError, match="outside='plain' runs take writes"):
        sim.run(workload=[Request(0.0, 0, "delete", "k")])
    with pytest.raises(ValueError, match="outside must be one of"):
        Simulation(outside="nobody")
