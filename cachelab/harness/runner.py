"""``cachelab run``: N node processes on one server, a workload, faults, and the checker's verdict.

The runner starts ``procs`` ``cachelab node`` processes (or, with one process and no
server, one node in this process on the embedded fakeredis), tells each to run its share
of the ops on ``threads`` threads, injects faults while they run (``livefaults``), then
settles every node across processes with sync markers, has each read every key once more
(the *after-settle* reads), collects every history and merges them on one clock for
``cachelab.check.check``. Every process it started is ended on the way out, on an error
or a Ctrl-C too.

**Clocks.** Histories carry ``time.monotonic()``. On one Linux machine every process
reads the same CLOCK_MONOTONIC, so the merged history is on one clock and the checker's
"completed before" is exact. Nodes on several machines would each have their own clock;
with an offset between them bounded by ε (say, from NTP or PTP's error bound, and after
mapping each machine's monotonic clock to a common epoch), pass ``clock_offset=ε``: the
checker then counts a write as completed before a read only when
``write.end + ε < read.start``, so no stale read is claimed that the clocks cannot prove.
This runner starts every node on this machine; ``clock_offset`` is there for histories
gathered elsewhere and to show the effect.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from cachelab.backends import connect, redact
from cachelab.check import Report, check, stale_reads
from cachelab.cluster import node_names, settle_markers
from cachelab.coherence import STRATEGIES, strategy_for
from cachelab.errors import CachelabError
from cachelab.harness import servers
from cachelab.harness.cluster_servers import ClusterProcess
from cachelab.harness.livefaults import NEEDS_PRIVATE_SERVER, Schedule, Target
from cachelab.harness.loadgen import Workload, split
from cachelab.harness.nodeclient import LocalNode, NodeLink, node_options, start_processes
from cachelab.harness.servers import ServerError
from cachelab.history import Incarnations, Op, incarnations
from cachelab.history import merge as merge_histories

RUN_STRATEGIES = tuple(name for name in STRATEGIES if name != "tracking")
"""The strategies a run can check: ``tracking`` has no versions for the checker to compare."""
POLL = 0.05
"""Seconds between progress polls (and fault checks)."""


class RunError(CachelabError, RuntimeError):
    """The run cannot start as asked (its message says why and what to do)."""


@dataclass(frozen=True)
class RunConfig:
    """What ``cachelab run`` was asked to do."""

    procs: int = 2
    threads: int = 2
    ops: int = 10_000
    url: str | None = None
    strategy: str = "invalidate"
    keys: int = 100
    read_share: float = 0.9
    value_size: int = 16
    faults: tuple[str, ...] = ()
    fault_every: float = 1.0
    seed: int = 1
    clock_offset: float = 0.0
    stripes: int = 1
    settle_timeout: float = 20.0
    progress: bool = True
    cluster: bool = False
    strict: bool = False

    @property
    def shared_server(self) -> bool:
        """Whether this run needs a server other processes reach (several, faults, a cluster)."""
        return self.procs > 1 or bool(self.faults) or self.cluster

    def workload(self, share: int, index: int) -> Workload:
        """Node ``index``'s workload of ``share`` ops."""
        return Workload(
            ops=share,
            threads=self.threads,
            seed=self.seed * 1000 + index,
            keys=self.keys,
            read_share=self.read_share,
            value_size=self.value_size,
        )


@dataclass
class RunResult:
    """What a run did, and what the checker found."""

    report: Report
    nodes: dict[str, dict[str, Any]]
    history: list[Op]
    wall: float
    done: int
    errors: int
    settled: bool
    settle_seconds: float
    stale_after_settle: int
    after_reads: int
    faults: dict[str, int] = field(default_factory=dict)
    server: str = ""
    clock_offset: float = 0.0
    strict: bool = False

    @property
    def ops_per_second(self) -> float:
        """Ops done over the wall time of the workload."""
        return self.done / self.wall if self.wall > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report's dict, the run's figures and each node's stats, JSON-ready."""
        run = {
            "server": self.server,
            "ops": self.done,
            "errors": self.errors,
            "wall_seconds": self.wall,
            "ops_per_second": self.ops_per_second,
            "settled": self.settled,
            "settle_seconds": self.settle_seconds,
            "stale_after_settle": self.stale_after_settle,
            "after_reads": self.after_reads,
            "faults": self.faults,
            "clock_offset": self.clock_offset,
            "strict": self.strict,
        }
        whole = {"report": self.report.to_dict(), "run": run, "nodes": self.nodes}
        finite: dict[str, Any] = _finite(whole)
        return finite

    def text(self) -> str:
        """The checker's report, then the run's figures and one line per node."""
        lines = [
            str(self.report),
            "",
            f"run: {self.done} ops in {self.wall:.2f}s "
            f"({self.ops_per_second:,.0f} ops/s), {self.errors} errors, on {self.server}",
        ]
        faults = ", ".join(f"{name} x{n}" for name, n in self.faults.items()) or "none"
        lines.append(f"faults: {faults}")
        settled = f"in {self.settle_seconds:.3f}s" if self.settled else "NOT within the timeout"
        lines.append(
            f"settled {settled}; stale after settle: {self.stale_after_settle} of "
            f"{self.after_reads} reads"
        )
        lines += [_node_line(name, node) for name, node in self.nodes.items()]
        return "\n".join(lines)


def _node_line(name: str, node: dict[str, Any]) -> str:
    """``node a (pid 12): 812 hits, 95 misses, ...``."""
    s = node["stats"]
    return (
        f"  node {name} (pid {node['pid']}): {s['hits']} hits, {s['misses']} misses, "
        f"{s['invalidations_received']} invalidations, {s['disconnects']} disconnects, "
        f"{s['reconnects']} reconnects, {s['repair_checks']} repair checks, "
        f"{s['flushes']} flushes"
    )


def _finite(value: Any) -> Any:
    """``value`` with every inf or nan float as None (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def run(config: RunConfig) -> RunResult:
    """Run it all; every process started is ended before this returns or raises."""
    if config.strategy not in RUN_STRATEGIES:
        raise RunError(
            f"strategy {config.strategy!r} records no versions; choose from "
            f"{', '.join(RUN_STRATEGIES)}"
        )
    with contextlib.ExitStack() as stack:
        _check_faults(config)  # before any server starts
        url, server, where = _backend(config, stack)
        namespace = f"run-{secrets.token_hex(4)}"
        nodes = _start_nodes(config, url, namespace, stack)
        target = _fault_target(config, url, server, stack)
        wall, done, errors, injected = _drive(nodes, config, target)
        return _finish(nodes, config, wall, done, errors, injected, where)
    raise AssertionError("unreachable")  # pragma: no cover (ExitStack swallows nothing)


def _backend(
    config: RunConfig, stack: contextlib.ExitStack
) -> tuple[str | None, servers.ServerProcess | None, str]:
    """The URL to use (None: embedded), the private server if we start one, and a label."""
    if config.cluster:
        return _cluster_backend(config, stack)
    if config.url is not None:
        connect(config.url).close()  # fails now, clearly, on a bad or unreachable URL
        return config.url, None, redact(config.url)
    if not config.shared_server:
        return None, None, "the embedded fakeredis (one process)"
    if servers.binary("redis") is None:
        raise RunError(
            "several node processes (or faults) need a shared Redis server: pass --url "
            "redis://HOST:PORT/0, or install redis-server (apt-get install redis-server)"
        )
    server = stack.enter_context(servers.ServerProcess("redis"))
    return server.url, server, f"a private redis-server {servers.version('redis')} ({server.url})"


def _cluster_backend(config: RunConfig, stack: contextlib.ExitStack) -> tuple[str, None, str]:
    """A Redis Cluster: at ``--url``, or a private one (3 masters, 3 replicas) we start."""
    if config.url is not None:
        connect(config.url, cluster=True).close()  # fails now, clearly
        return config.url, None, f"the Redis Cluster at {redact(config.url)}"
    try:
        cluster = stack.enter_context(ClusterProcess("redis"))
    except ServerError as exc:
        raise RunError(f"--cluster without --url starts a private cluster, and: {exc}") from None
    seeds = " ".join(cluster.seeds)
    return cluster.url, None, f"a private Redis Cluster, 3 masters and 3 replicas ({seeds})"


def _check_faults(config: RunConfig) -> None:
    """Refuse a fault the run's server cannot take (one not started here as a single server)."""
    private_only = NEEDS_PRIVATE_SERVER.intersection(config.faults)
    if private_only and (config.url is not None or config.cluster):
        fix = "drop --cluster" if config.cluster else "drop --url"
        raise RunError(f"fault {sorted(private_only)[0]} needs a private server: {fix}")


def _start_nodes(
    config: RunConfig, url: str | None, namespace: str, stack: contextlib.ExitStack
) -> list[NodeLink]:
    """Every node, closed by ``stack`` on the way out."""
    options = [
        node_options(
            name, namespace, config.strategy, config.stripes,
            cluster=config.cluster, strict=config.strict,
        )
        for name in node_names(config.procs)
    ]
    local = url is None  # the embedded fakeredis: one node, in this process
    nodes: list[NodeLink] = [LocalNode(None, options[0])] if local else []
    if url is not None:
        nodes += start_processes(url, options)
    for node in nodes:
        stack.callback(node.close)
    return nodes


def _fault_target(
    config: RunConfig,
    url: str | None,
    server: servers.ServerProcess | None,
    stack: contextlib.ExitStack,
) -> Target | None:
    """An admin client for the faults, if any (closed by ``stack``)."""
    if not config.faults or url is None:
        return None
    if config.cluster:
        cluster = connect(url, cluster=True)
        stack.callback(cluster.close)
        primaries = cluster.get_primaries()  # type: ignore[no-untyped-call]
        masters = tuple(node.redis_connection for node in primaries)
        return Target(masters[0], None, masters[1:])
    admin = connect(url)
    stack.callback(admin.close)
    return Target(admin, server)


def _drive(
    nodes: list[NodeLink], config: RunConfig, target: Target | None
) -> tuple[float, int, int, dict[str, int]]:
    """Start every share, inject faults, show progress until all are done; (wall, done,
    errors, faults injected)."""
    start = time.monotonic()
    for index, (node, share) in enumerate(zip(nodes, split(config.ops, len(nodes)), strict=True)):
        node.call({"cmd": "run", "workload": config.workload(share, index).__dict__})
    schedule = Schedule(config.faults, config.fault_every, start)
    show = config.progress and sys.stderr.isatty()
    with tqdm(total=config.ops, unit="op", disable=not show, file=sys.stderr) as bar:
        while True:
            _inject(schedule, target, time.monotonic())
            states = [node.call({"cmd": "progress"}) for node in nodes]
            done = sum(state["done"] for state in states)
            bar.update(done - bar.n)
            if all(state["finished"] for state in states):
                break
            time.sleep(POLL)
    return time.monotonic() - start, done, sum(s["errors"] for s in states), schedule.injected


def _inject(schedule: Schedule, target: Target | None, now: float) -> None:
    """Inject whatever faults are due."""
    if target is not None:
        for name in schedule.due(now):
            schedule.inject(name, target)


def settle(nodes: list[NodeLink], own_marker: bool, timeout: float) -> bool:
    """``Cluster.settle`` across processes: a sync marker, resent every quarter second (one
    published while a subscription is down reaches nobody), until every node has it."""
    senders = nodes if own_marker else nodes[:1]

    def publish(nonce: str) -> None:
        for node in senders:
            node.call({"cmd": "sync", "nonce": nonce, "publish": True})

    def synced(nonce: str) -> bool:
        return all(node.call({"cmd": "sync", "nonce": nonce})["synced"] for node in nodes)

    return settle_markers(publish, synced, timeout, poll=0.005)


def collect(nodes: list[NodeLink], since: dict[str, int] | None = None) -> dict[str, list[Op]]:
    """Each node's recorded ops (from index ``since[name]`` on), by node name."""
    return {
        node.name: [
            Op(*op)
            for op in node.call({"cmd": "history", "since": (since or {}).get(node.name, 0)})["ops"]
        ]
        for node in nodes
    }


def merge(histories: dict[str, list[Op]], order: Incarnations | None = None) -> list[Op]:
    """Every node's ops on one clock, ordered by end (sound on one machine: see the module),
    each key's incarnations numbered alike for all (``cachelab.history.merge``)."""
    return merge_histories(histories.values(), order)


def _finish(
    nodes: list[NodeLink],
    config: RunConfig,
    wall: float,
    done: int,
    errors: int,
    injected: dict[str, int],
    where: str,
) -> RunResult:
    """Settle, collect, read every key once more, and measure."""
    started = time.monotonic()
    own_marker = strategy_for(config.strategy).own_marker
    settled = settle(nodes, own_marker, config.settle_timeout)
    settle_seconds = time.monotonic() - started
    histories = collect(nodes)
    reads = _after_settle(nodes, config.keys, {name: len(ops) for name, ops in histories.items()})
    # one numbering of incarnations for the run and the reads after it, or they disagree
    order = incarnations(op for ops in (*histories.values(), *reads.values()) for op in ops)
    history, after = merge(histories, order), merge(reads, order)
    stale_after = _stale_among(history, after, config.clock_offset)
    stats = {node.name: _stats(node) for node in nodes}
    report = check(history, offset=config.clock_offset, nodes=len(nodes))
    return RunResult(
        report,
        stats,
        history,
        wall,
        done,
        errors,
        settled,
        settle_seconds,
        stale_after,
        len(after),
        injected,
        where,
        config.clock_offset,
        config.strict,
    )


def _after_settle(
    nodes: list[NodeLink], keys: int, since: dict[str, int]
) -> dict[str, list[Op]]:
    """Every node reads every key once (recorded); those reads, by node."""
    names = [f"k{i}" for i in range(keys)]
    for node in nodes:
        node.call({"cmd": "read", "keys": names})
    return collect(nodes, since)


def _stale_among(history: list[Op], after: list[Op], offset: float) -> int:
    """How many of the ``after`` reads the checker finds stale against the whole run."""
    later = set(after)
    return sum(op in later for op, _ in stale_reads(history + after, offset))


def _stats(node: NodeLink) -> dict[str, Any]:
    """A node's pid, coherence and counters."""
    reply = node.call({"cmd": "stats"})
    return {"pid": reply["pid"], "coherent": reply["coherent"], "stats": reply["stats"]}
