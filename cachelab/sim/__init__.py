"""cachelab.sim: the real CacheNodes on a virtual clock, a simulated bus and network.

    from cachelab.sim import Simulation, Network
    result = Simulation(nodes=4, strategy="invalidate", seed=7,
                        network=Network(delay=0.002, jitter=0.001)).run(ops=10_000)
    result.report.to_dict()["stale_fraction"]

``result.trace`` is a tuple of ``TraceEvent(t, kind, node, key, version, detail,
since)`` in time order; the kinds (write, send, deliver, drop, read, stale_read,
fill, fill_rejected, evict, flush, gap, disconnect, reconnect, partition, crash,
restart, redis_restart, garbage, db_write, db_load, lease) are documented in
``cachelab.sim.trace``. Workloads are iterables of ``Request`` (see
``cachelab.sim.workloads``); the classic failures are in ``cachelab.sim.scenarios``.
"""

from cachelab.sim.engine import NODE_OPTIONS, Simulation
from cachelab.sim.network import FAULTS, Fault, Network, Partition
from cachelab.sim.result import SimResult, peak
from cachelab.sim.store import MemoryStore
from cachelab.sim.trace import KINDS, TraceEvent, caches_at
from cachelab.sim.workloads import Bursts, Request

__all__ = [
    "FAULTS",
    "KINDS",
    "NODE_OPTIONS",
    "Bursts",
    "Fault",
    "MemoryStore",
    "Network",
    "Partition",
    "Request",
    "SimResult",
    "Simulation",
    "TraceEvent",
    "caches_at",
    "peak",
]
