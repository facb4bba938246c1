"""A private Redis Cluster of server processes: tests and fault runs of a striped namespace.

A :class:`ClusterProcess` starts ``masters * (1 + replicas_per_master)`` ``redis-server`` or
``valkey-server`` processes in cluster mode (each a :class:`~cachelab.harness.servers.ServerProcess`
on a free loopback port, in a temp dir of its own), joins them with ``redis-cli --cluster
create`` and injects the faults a striped near cache must survive: a manual failover, a
master's crash (automatic failover), its restart as a replica, and a hash slot migrated from
one master to another while clients write. Every fault returns only once the cluster is
``ok`` again and every live node agrees on the new topology.

Topology is never cached: roles and slot owners are read live from ``CLUSTER NODES``.

``python -m cachelab.harness.cluster_servers --kind valkey`` starts one and prints its seeds until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from cachelab.harness.cluster_nodes import NodeView, is_replica, owns_slots, parse_nodes
from cachelab.harness.servers import (
    KINDS,
    Kind,
    ServerError,
    ServerProcess,
    binary,
    free_port,
    version,
)

SLOTS = 16384
_CLI: dict[Kind, str] = {"redis": "redis-cli", "valkey": "valkey-cli", "redis8": "redis-cli"}
_MIGRATE_BATCH = 100  # keys per MIGRATE, as redis-cli's own --cluster reshard moves them
_MIGRATE_TIMEOUT_MS = 5000


class ClusterUnavailable(ServerError):
    """No cluster can be built here: a binary or its cli is missing, or it lacks cluster mode."""


class ClusterTimeout(ServerError):
    """The cluster did not reach the state asked for in time (its nodes' views are attached)."""


def cli_binary(kind: Kind) -> str | None:
    """The cluster-capable cli for ``kind``: the one beside the server binary, else on PATH."""
    server = binary(kind)
    names = [_CLI[kind], "redis-cli"] if kind == "valkey" else ["redis-cli"]
    if server is not None:
        for name in names:
            beside = Path(server).with_name(name)
            if os.access(beside, os.X_OK):
                return str(beside)
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (its ``{hash tag}`` if it has one), as the cluster computes it."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


# Strong references, so the atexit hook finds a cluster whose owner dropped it.
_LIVE: set[ClusterProcess] = set()


@atexit.register
def _close_leftovers() -> None:
    """A crashed test or script must leave no cluster node running and no temp dir behind."""
    for cluster in list(_LIVE):
        cluster.close()


class ClusterProcess:
    """A private Redis Cluster: ``masters`` masters with ``replicas_per_master`` replicas each.

    ``with ClusterProcess("valkey") as cluster:`` starts it and waits until every node says
    ``cluster_state:ok`` and every replica is in sync; on exit every process is killed and
    every directory deleted. ``node_timeout_ms`` is the cluster's failure-detection time: a
    killed master's replica takes over about two to three times that later. Not thread-safe:
    control it from one thread (clients of the cluster may run on any).
    """

    def __init__(
        self,
        kind: Kind = "redis",
        *,
        masters: int = 3,
        replicas_per_master: int = 1,
        node_timeout_ms: int = 1000,
        host: str = "127.0.0.1",
        timeout: float = 30.0,
    ) -> None:
        _check_shape(kind, masters, replicas_per_master, node_timeout_ms)
        self.kind: Kind = kind
        self.masters_wanted = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.host = host
        self.timeout = timeout
        self._nodes: list[ServerProcess] = []
        self._ids: dict[int, str] = {}  # port -> node id (kept in nodes.conf across restarts)

    def __repr__(self) -> str:
        ports = [node.port for node in self._nodes]
        return f"ClusterProcess({self.kind!r}, masters={self.masters_wanted}, ports={ports})"

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> ClusterProcess:
        """Start every node, create the cluster, and wait until it is ok and in sync."""
        if self._nodes:
            raise ServerError(f"{self!r} is already started")
        cli = self._require_tools()
        _LIVE.add(self)
        try:
            self._spawn_nodes()
            self._create(cli)
            self.wait_stable()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill every node this cluster started and delete their directories."""
        nodes, self._nodes = self._nodes, []
        for node in nodes:
            node.kill()  # a test cluster's data is throwaway: no clean shutdown to wait for
            node.close()
        _LIVE.discard(self)

    def __enter__(self) -> ClusterProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _require_tools(self) -> str:
        """The cli's path; ClusterUnavailable naming what is missing otherwise."""
        if binary(self.kind) is None:
            raise ClusterUnavailable(f"no {self.kind} server binary is installed")
        cli = cli_binary(self.kind)
        if cli is None:
            raise ClusterUnavailable(
                f"no {_CLI[self.kind]} or redis-cli to create a {self.kind} cluster with"
            )
        return cli

    def _spawn_nodes(self) -> None:
        """Start each server in cluster mode and check that it really is in cluster mode."""
        for _ in range(self.masters_wanted * (1 + self.replicas_per_master)):
            node = self._spawn_node()
            require_cluster_mode(node)
            self._ids[node.port] = self._query(node, "CLUSTER", "MYID")

    def _spawn_node(self, tries: int = 3) -> ServerProcess:
        """One node on free ports; a bus port taken meanwhile is retried with a new one."""
        while True:
            node = ServerProcess(self.kind, host=self.host, extra_args=self._node_args())
            self._nodes.append(node)
            try:
                return node.start()
            except ServerError as error:
                self._nodes.remove(node)
                node.close()
                tries -= 1
                if not tries or "in use" not in str(error):
                    message = f"{self.kind} would not start in cluster mode: {error}"
                    raise ClusterUnavailable(message) from error

    def _node_args(self) -> list[str]:
        """Cluster mode, a short failure detection, and replicas that sync at once."""
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",  # in the node's own dir: kept on restart
            # The bus port defaults to port + 10000, which may be taken or above 65535.
            "--cluster-port", str(free_port(self.host)),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--repl-diskless-sync-delay", "0",  # default 5 s: every full sync would wait it
        ]  # fmt: skip

    def _create(self, cli: str) -> None:
        """``--cluster create``: no prompt (stdin closed, --cluster-yes), output kept for errors."""
        command = [cli, "--cluster", "create", *self.seeds]
        command += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=self.timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0 or "[ERR]" in done.stdout:
            output = (done.stdout + done.stderr)[-2000:]
            raise ServerError(f"{Path(cli).name} --cluster create failed:\n{output}")

    # -- who is who ---------------------------------------------------------------------

    @property
    def nodes(self) -> list[ServerProcess]:
        """Every node's ServerProcess, running or killed, in start order."""
        return list(self._nodes)

    @property
    def seeds(self) -> list[str]:
        """``"host:port"`` of every node, for a cluster client's startup nodes."""
        return [f"{node.host}:{node.port}" for node in self._nodes]

    @property
    def url(self) -> str:
        """A ``redis://host:port`` of one live master (a cluster client finds the rest)."""
        master = self.masters()[0]
        return f"redis://{master.host}:{master.port}"

    def node_id(self, node: ServerProcess) -> str:
        """The cluster's id for ``node`` (it keeps it across restarts)."""
        return self._ids[node.port]

    def by_id(self, node_id: str) -> ServerProcess:
        """The ServerProcess whose cluster id is ``node_id``."""
        for node in self._nodes:
            if self._ids.get(node.port) == node_id:
                return node
        raise KeyError(f"no node of {self!r} has id {node_id!r}")

    def topology(self) -> dict[str, NodeView]:
        """``CLUSTER NODES`` as the first live node sees it right now."""
        return parse_nodes(self._query(self._live()[0], "CLUSTER", "NODES"))

    def masters(self) -> list[ServerProcess]:
        """The live masters that own slots now, in start order."""
        views = self.topology()
        return [n for n in self._live() if owns_slots(views.get(self.node_id(n)))]

    def replicas(self) -> list[ServerProcess]:
        """The live replicas now, in start order."""
        views = self.topology()
        return [n for n in self._live() if is_replica(views.get(self.node_id(n)))]

    def replica_of(self, master: ServerProcess) -> ServerProcess:
        """A live replica of ``master`` now (the first in start order)."""
        wanted = self.node_id(master)
        views = self.topology()
        for node in self._live():
            view = views.get(self.node_id(node))
            if view is not None and not view.is_master and view.master_id == wanted:
                return node
        raise ServerError(f"{master!r} has no live replica")

    def owner(self, slot: int) -> ServerProcess:
        """The master that owns hash ``slot`` now."""
        _check_slot(slot)
        for view in self.topology().values():
            if view.is_master and any(low <= slot <= high for low, high in view.slots):
                return self.by_id(view.node_id)
        raise ServerError(f"no master owns slot {slot}")

    slot_of = staticmethod(slot_of)

    def client(self, **options: Any) -> RedisCluster:
        """A new redis-py cluster client, its startup nodes every live node."""
        startup = [ClusterNode(node.host, node.port) for node in self._live()]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=startup, **options)

    def _live(self) -> list[ServerProcess]:
        """The nodes whose process runs (a paused one included)."""
        live = [node for node in self._nodes if node.running]
        if not live:
            raise ServerError(f"{self!r} has no live node")
        return live

    # -- faults -------------------------------------------------------------------------

    def failover(self, replica: ServerProcess) -> None:
        """``CLUSTER FAILOVER`` on ``replica`` (coordinated, no write lost); return once it is
        master and every live node agrees."""
        self._require_role(replica, master=False)
        old = self.by_id(self._view(replica).master_id or "")
        self._query(replica, "CLUSTER", "FAILOVER")
        self._wait(lambda: self._is_master_of_all(replica, old), f"{replica!r} to take over")

    def kill_master(self, master: ServerProcess) -> ServerProcess:
        """SIGKILL ``master``; return the replica the cluster promoted once it is ok again."""
        self._require_role(master, master=True)
        heirs = [n for n in self.replicas() if self._view(n).master_id == self.node_id(master)]
        if not heirs:
            raise ServerError(f"{master!r} has no replica: killing it would leave slots unowned")
        master.kill()
        self._wait(lambda: self._promoted(heirs) is not None, f"a replica of {master!r} to win")
        promoted = self._promoted(heirs)
        assert promoted is not None
        return promoted

    def restart(self, node: ServerProcess) -> None:
        """Start a killed node again (same port and dir); return once it rejoined as a replica,
        in sync, and every live node agrees."""
        if node not in self._nodes:
            raise ValueError(f"{node!r} is not a node of {self!r}")
        if node.running:
            raise ServerError(f"{node!r} is running: kill it first")
        node.restart()
        self._wait(lambda: is_replica(self._view(node)), f"{node!r} to rejoin as a replica")

    def migrate_slot(
        self, slot: int, target: ServerProcess, *, during: Callable[[], None] | None = None
    ) -> None:
        """Move hash ``slot`` and its keys from its owner to master ``target``, the way
        ``redis-cli --cluster reshard`` does, safe while clients write; return once all agree.

        ``during`` runs once mid-move, after the first batch of keys went over (clients then
        see ASK redirections): a test drives its writes into that phase without luck.
        """
        source = self.owner(slot)
        self._require_role(target, master=True)
        if source is target:
            raise ValueError(f"{target!r} already owns slot {slot}")
        src_id, dst_id = self.node_id(source), self.node_id(target)
        self._query(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        self._query(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        self._move_keys(slot, source, target, during or (lambda: None))
        # Target first: were the source told first, a client sent on by it could be
        # redirected back by a target that does not yet know it owns the slot.
        for master in [target, source, *[m for m in self.masters() if m not in (source, target)]]:
            self._query(master, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self._wait(lambda: self._owns(target, slot), f"{target!r} to own slot {slot}")

    def _move_keys(
        self, slot: int, source: ServerProcess, target: ServerProcess, during: Callable[[], None]
    ) -> None:
        """MIGRATE the slot's keys in batches until the source has none left."""
        self._migrate_batch(slot, source, target)
        during()  # after the first batch, even when that one moved them all (or none)
        while self._migrate_batch(slot, source, target):
            pass

    def _migrate_batch(self, slot: int, source: ServerProcess, target: ServerProcess) -> int:
        """MIGRATE up to one batch of the slot's keys; how many there were."""
        keys = self._query(source, "CLUSTER", "GETKEYSINSLOT", slot, _MIGRATE_BATCH)
        if keys:
            self._query(
                source, "MIGRATE", target.host, target.port, "", 0, _MIGRATE_TIMEOUT_MS,
                "KEYS", *keys,
            )  # fmt: skip
        return len(keys)

    # -- waiting ------------------------------------------------------------------------

    def wait_stable(self, condition: Callable[[], bool] | None = None, what: str = "") -> None:
        """Wait until ``condition`` (if any) holds, every live node says ``cluster_state:ok``,
        all agree on roles and slots, and every live replica's link to its master is up."""
        self._wait(condition or (lambda: True), what or "the cluster to settle")

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        """Poll until ``condition`` and the cluster is stable; ClusterTimeout with views if not."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, ServerError, KeyError):
                if condition() and self._stable():
                    return
            time.sleep(0.05)
        raise ClusterTimeout(f"timed out after {self.timeout}s waiting for {what}:\n{self._dump()}")

    def _stable(self) -> bool:
        """Ok everywhere, one agreed topology covering every slot, every replica in sync."""
        live = self._live()
        if not all(self._info(node, "CLUSTER INFO")["cluster_state"] == "ok" for node in live):
            return False
        shapes = {self._agreed_shape(node) for node in live}
        if len(shapes) != 1:
            return False
        return all(self._in_sync(node) for node in live)

    def _agreed_shape(self, node: ServerProcess) -> frozenset[tuple[Any, ...]]:
        """What ``node`` believes about the live nodes (a dead one's state may lag in gossip)."""
        live_ids = {self.node_id(n) for n in self._live()}
        views = parse_nodes(self._query(node, "CLUSTER", "NODES"))
        if not live_ids <= views.keys() or any(views[i].failing for i in live_ids):
            return frozenset({("incomplete", node.port)})
        return frozenset(views[i].shape() for i in live_ids)

    def _in_sync(self, node: ServerProcess) -> bool:
        """A master is; a replica is once its link is up and its initial sync is done."""
        info = self._info(node, "INFO replication")
        if info.get("role") != "slave":
            return True
        return info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == "0"

    def _is_master_of_all(self, new: ServerProcess, old: ServerProcess) -> bool:
        """True once ``new`` owns slots and ``old`` (if alive) follows it."""
        if not owns_slots(self._view(new)):
            return False
        return not old.running or self._view(old).master_id == self.node_id(new)

    def _promoted(self, heirs: list[ServerProcess]) -> ServerProcess | None:
        """The heir that now owns slots, if one does."""
        return next((n for n in heirs if n.running and owns_slots(self._view(n))), None)

    def _owns(self, node: ServerProcess, slot: int) -> bool:
        """True when ``node`` owns ``slot`` (``_stable`` then checks that all nodes agree)."""
        return any(low <= slot <= high for low, high in self._view(node).slots)

    def _view(self, node: ServerProcess) -> NodeView:
        """``node`` as the first live node sees it."""
        return self.topology()[self.node_id(node)]

    def _require_role(self, node: ServerProcess, *, master: bool) -> None:
        """ValueError unless ``node`` is a live member with the role a fault needs."""
        if node not in self._nodes or not node.running:
            raise ValueError(f"{node!r} is not a live node of {self!r}")
        view = self._view(node)
        if master and not owns_slots(view):
            raise ValueError(f"{node!r} is not a master owning slots")
        if not master and not is_replica(view):
            raise ValueError(f"{node!r} is not a replica")

    def _dump(self) -> str:
        """Every live node's CLUSTER NODES, for an error message."""
        lines = []
        for node in self._nodes:
            if not node.running:
                lines.append(f"-- :{node.port} is not running")
                continue
            try:
                lines.append(f"-- :{node.port} sees\n{self._query(node, 'CLUSTER', 'NODES')}")
            except redis.RedisError as error:
                lines.append(f"-- :{node.port} does not answer: {error}")
        return "\n".join(lines)

    # -- talking to one node --------------------------------------------------------------

    def _query(self, node: ServerProcess, *command: Any) -> Any:
        """Run one command on one node over a short-lived, no-retry connection."""
        with _control(node) as conn:
            return conn.execute_command(*command)  # type: ignore[no-untyped-call]

    def _info(self, node: ServerProcess, command: str) -> dict[str, str]:
        """``CLUSTER INFO`` or ``INFO <section>`` as a plain dict of strings."""
        return _fields(self._query(node, *command.split()))


@contextlib.contextmanager
def _control(node: ServerProcess) -> Iterator[redis.Redis]:
    """A connection for the harness itself: decoded, short timeouts, no hidden retries."""
    conn = node.client(
        decode_responses=True, socket_timeout=5.0, socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip
    try:
        yield conn
    finally:
        conn.close()


def _fields(raw: Any) -> dict[str, str]:
    """``key:value`` lines (INFO, CLUSTER INFO) as a dict, whatever redis-py parsed already."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    pairs = (line.partition(":") for line in str(raw).splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def require_cluster_mode(node: ServerProcess) -> None:
    """ClusterUnavailable unless ``node`` runs with cluster mode on."""
    with _control(node) as conn:
        enabled = _fields(conn.info("cluster")).get("cluster_enabled")
    if enabled != "1":
        raise ClusterUnavailable(f"{node!r} does not run in cluster mode (cluster_enabled:0)")


def _check_slot(slot: int) -> None:
    """Refuse a slot outside 0..16383."""
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < SLOTS:
        raise ValueError(f"slot must be an int in 0..{SLOTS - 1}, not {slot!r}")


def _check_shape(kind: str, masters: int, replicas: int, timeout_ms: int) -> None:
    """Refuse a cluster redis-cli cannot build, naming the bad argument."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not isinstance(masters, int) or masters < 3:
        raise ValueError(f"masters must be an int >= 3 (redis-cli's minimum), not {masters!r}")
    if not isinstance(replicas, int) or replicas < 0:
        raise ValueError(f"replicas_per_master must be an int >= 0, not {replicas!r}")
    if not isinstance(timeout_ms, int) or timeout_ms < 100:
        raise ValueError(f"node_timeout_ms must be an int of at least 100, not {timeout_ms!r}")


# -- python -m cachelab.harness.cluster_servers ---------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line of ``python -m cachelab.harness.cluster_servers``."""
    parser = argparse.ArgumentParser(
        prog="python -m cachelab.harness.cluster_servers",
        description="Start a private local Redis Cluster and print its seeds until Ctrl-C.",
    )
    parser.add_argument("--kind", choices=KINDS, default="redis")
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1, help="replicas per master")
    parser.add_argument("--node-timeout", type=int, default=1000, help="milliseconds")
    return parser.parse_args(argv)


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGINT ends the run, so the ``with`` block kills the nodes.

    SIGINT too: a shell starts a background job with SIGINT ignored, and Python then never
    raises KeyboardInterrupt; the nodes, in sessions of their own, would outlive us.
    """
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start a cluster, print its seeds and URL, and keep it up until Ctrl-C or SIGTERM."""
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        with ClusterProcess(
            args.kind, masters=args.masters, replicas_per_master=args.replicas,
            node_timeout_ms=args.node_timeout,
        ) as cluster:  # fmt: skip
            print(f"{args.kind} {version(args.kind)} cluster: {len(cluster.masters())} masters, "
                  f"{len(cluster.replicas())} replicas")  # fmt: skip
            print("seeds " + " ".join(cluster.seeds))
            print("url " + cluster.url)
            print("Ctrl-C stops it and deletes its data.", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        pass
    except (ServerError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
