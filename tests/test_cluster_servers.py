"""cachelab.harness.cluster_servers on both real binaries: forming, faults, and sharded pub/sub.

A fault test gets a fresh 3+3 cluster (``real_cluster``), since it changes the topology; the
tests that leave roles and slots alone share one per kind (``shared_cluster``).
The sharded pub/sub tests pin down what Redis 7.0 and Valkey 8.1 do to an SSUBSCRIBE
subscriber when its slot moves, fails over or dies: a striped bus must handle each case.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.exceptions import MovedError
from redis.retry import Retry

from cachelab.harness import cluster_servers
from cachelab.harness.cluster_nodes import parse_nodes
from cachelab.harness.cluster_servers import (
    SLOTS,
    ClusterProcess,
    ClusterUnavailable,
    require_cluster_mode,
)
from cachelab.harness.servers import Kind, ServerProcess
from tests.helpers import REAL_PARAMS, fresh_cluster, require_cluster

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "{t}:ch"  # the hash tag {t} puts the channel in the slot of every "{t}:..." key


def keys_on_every_master(cluster: ClusterProcess, per_master: int = 3) -> list[str]:
    """Keys such that each live master owns ``per_master`` of them."""
    wanted = {master.port: per_master for master in cluster.masters()}
    owners: dict[int, int] = {}
    keys = []
    for i in range(10_000):
        key = f"key:{i}"
        slot = cluster.slot_of(key)
        port = owners.setdefault(slot, cluster.owner(slot).port)
        if wanted.get(port, 0):
            wanted[port] -= 1
            keys.append(key)
        if not any(wanted.values()):
            return keys
    raise AssertionError(f"found no keys for some masters: {wanted}")


def next_message(pubsub: PubSub, timeout: float = 5.0) -> dict[str, Any] | None:
    """The next message or push the subscriber gets, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message: dict[str, Any] | None = pubsub.get_message(timeout=0.1)
        if message is not None:
            return message
    return None


def subscriber(node: ServerProcess, **options: Any) -> tuple[redis.Redis, PubSub]:
    """A plain (non-cluster) connection to ``node`` that did SSUBSCRIBE CHANNEL."""
    conn = node.client(**options)
    pubsub = conn.pubsub()
    pubsub.ssubscribe(CHANNEL)
    assert next_message(pubsub) == smessage("ssubscribe", 1)
    return conn, pubsub


def smessage(kind: str, data: Any) -> dict[str, Any]:
    """A PubSub.get_message() result for CHANNEL, as redis-py builds it."""
    return {"type": kind, "pattern": None, "channel": CHANNEL.encode(), "data": data}


def replica_conn(node: ServerProcess) -> redis.Redis:
    """A connection to a replica that may read its own copy (READONLY), never redirected."""
    conn = node.client()
    conn.execute_command("READONLY")
    return conn


@pytest.fixture(scope="module", params=REAL_PARAMS)
def shared_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterProcess]:
    """One cluster per kind for the tests that leave its topology alone (2 s saved each)."""
    yield from fresh_cluster(request.param)


# -- forming ---------------------------------------------------------------------------


def test_the_cluster_forms_with_three_masters_owning_all_slots_and_three_synced_replicas(
    shared_cluster: ClusterProcess,
) -> None:
    masters, replicas = shared_cluster.masters(), shared_cluster.replicas()
    assert len(masters) == 3 and len(replicas) == 3
    assert {shared_cluster.replica_of(m).port for m in masters} == {r.port for r in replicas}
    views = shared_cluster.topology()
    owned = sorted(r for v in views.values() if v.is_master for r in v.slots)
    covered = [s for low, high in owned for s in range(low, high + 1)]
    assert covered == list(range(SLOTS))  # every slot once, none twice
    assert all(port != 6379 for port in (n.port for n in shared_cluster.nodes))
    assert shared_cluster.seeds == [f"127.0.0.1:{n.port}" for n in shared_cluster.nodes]
    assert shared_cluster.url in {f"redis://127.0.0.1:{m.port}" for m in masters}
    for node in shared_cluster.nodes:
        with node.client(decode_responses=True) as conn:
            assert conn.cluster("info")["cluster_state"] == "ok"
            info = conn.info("replication")
            assert info["role"] == ("master" if node in masters else "slave")
            assert info.get("master_link_status", "up") == "up"


def test_a_cluster_client_writes_and_reads_keys_on_every_master_and_nothing_fails_over(
    shared_cluster: ClusterProcess,
) -> None:
    epoch_before = shared_cluster.topology()
    keys = keys_on_every_master(shared_cluster)
    with shared_cluster.client(decode_responses=True) as client:
        for _ in range(200):  # some load, to see a 1 s node timeout does not trip
            for key in keys:
                client.set(key, key.upper())
        assert [client.get(key) for key in keys] == [key.upper() for key in keys]
    for key in keys:
        with shared_cluster.owner(shared_cluster.slot_of(key)).client() as owner:
            assert owner.get(key) == key.upper().encode()  # no MOVED: it is the owner
    assert shared_cluster.topology() == epoch_before  # same roles, slots and masters


def test_slot_of_matches_the_server_and_honours_hash_tags(shared_cluster: ClusterProcess) -> None:
    with shared_cluster.nodes[0].client() as conn:
        for key in ["a", "user:1", "{t}:x", "{t}:y", "b{}c"]:
            assert shared_cluster.slot_of(key) == conn.cluster("keyslot", key)
    assert shared_cluster.slot_of("{t}:x") == shared_cluster.slot_of("{t}:y")


# -- faults ----------------------------------------------------------------------------


def test_failover_swaps_master_and_replica_and_keeps_the_data(
    real_cluster: ClusterProcess,
) -> None:
    keys = keys_on_every_master(real_cluster)
    with real_cluster.client() as client:
        for key in keys:
            client.set(key, key)
        old = real_cluster.owner(real_cluster.slot_of(keys[0]))
        new = real_cluster.replica_of(old)
        real_cluster.failover(new)
        assert real_cluster.owner(real_cluster.slot_of(keys[0])) is new
        assert real_cluster.replica_of(new) is old
        assert old in real_cluster.replicas() and new in real_cluster.masters()
        assert [client.get(key) for key in keys] == [key.encode() for key in keys]
    with new.client() as conn:
        assert conn.get(keys[0]) == keys[0].encode()


def test_kill_master_promotes_its_replica_and_restart_brings_it_back_as_replica(
    real_cluster: ClusterProcess,
) -> None:
    victim = real_cluster.masters()[0]
    heir = real_cluster.replica_of(victim)
    slot = real_cluster.topology()[real_cluster.node_id(victim)].slots[0][0]
    key = next(f"k{i}" for i in range(100_000) if real_cluster.slot_of(f"k{i}") == slot)
    with victim.client() as conn:
        conn.set(key, "kept")
        assert conn.wait(1, 5000) == 1  # the replica has it: a crash now loses nothing
    assert real_cluster.kill_master(victim) is heir
    assert not victim.running
    assert real_cluster.owner(slot) is heir and len(real_cluster.masters()) == 3
    with real_cluster.client() as client:
        assert client.get(key) == b"kept"
        client.set(key, "after")
    real_cluster.restart(victim)
    assert real_cluster.replica_of(heir) is victim
    with replica_conn(victim) as conn:
        assert conn.get(key) == b"after"  # synced from the new master, not its old self


def test_migrate_slot_moves_the_slot_and_its_keys_while_a_client_writes(
    real_cluster: ClusterProcess,
) -> None:
    slot = real_cluster.slot_of("{m}")
    keys = [f"{{m}}:{i}" for i in range(150)]  # two MIGRATE batches of 100
    source = real_cluster.owner(slot)
    target = next(m for m in real_cluster.masters() if m is not source)
    with real_cluster.client(decode_responses=True) as client:
        for key in keys:
            client.set(key, "v0")

        def write_mid_move() -> None:
            # 100 keys moved, 50 not yet: the client follows ASK to the target for the rest
            for key in [*keys, "{m}:new"]:
                client.set(key, "v1")

        real_cluster.migrate_slot(slot, target, during=write_mid_move)
        assert real_cluster.owner(slot) is target
        assert all(client.get(key) == "v1" for key in [*keys, "{m}:new"])
    with target.client(decode_responses=True) as conn:
        assert conn.cluster("countkeysinslot", slot) == len(keys) + 1
    with source.client() as conn:
        assert conn.cluster("countkeysinslot", slot) == 0


def test_fault_arguments_are_checked(shared_cluster: ClusterProcess) -> None:
    master = shared_cluster.masters()[0]
    replica = shared_cluster.replica_of(master)
    slot = shared_cluster.topology()[shared_cluster.node_id(master)].slots[0][0]
    with pytest.raises(ValueError, match="not a replica"):
        shared_cluster.failover(master)
    with pytest.raises(ValueError, match="not a master"):
        shared_cluster.kill_master(replica)
    with pytest.raises(ValueError, match="already owns"):
        shared_cluster.migrate_slot(slot, master)
    with pytest.raises(ValueError, match="slot must be"):
        shared_cluster.owner(SLOTS)
    assert replica.running and master in shared_cluster.masters()  # nothing was done


# -- sharded pub/sub -------------------------------------------------------------------


def test_spublish_on_either_node_of_a_shard_reaches_the_subscribers_of_both(
    shared_cluster: ClusterProcess,
) -> None:
    owner = shared_cluster.owner(shared_cluster.slot_of(CHANNEL))
    replica = shared_cluster.replica_of(owner)
    on_master, master_sub = subscriber(owner)
    on_replica, replica_sub = subscriber(replica)
    with shared_cluster.client() as client, on_master, on_replica, replica.client() as direct:
        assert client.spublish(CHANNEL, "via-master") == 1  # counts the master's own only
        # A replica serves SPUBLISH for its master's slots itself (no MOVED) and the
        # cluster bus carries it to the whole shard; again only local receivers count.
        assert direct.spublish(CHANNEL, "via-replica") == 1
        for sub in (master_sub, replica_sub):
            assert next_message(sub) == smessage("smessage", b"via-master")
            assert next_message(sub) == smessage("smessage", b"via-replica")
        master_sub.close()
        replica_sub.close()


def test_spublish_inside_eval_works_for_a_channel_in_the_scripts_slot_only(
    shared_cluster: ClusterProcess,
) -> None:
    owner = shared_cluster.owner(shared_cluster.slot_of(CHANNEL))
    others = (f"{{o{i}}}:ch" for i in range(100))
    far = next(ch for ch in others if shared_cluster.owner(shared_cluster.slot_of(ch)) is not owner)
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SPUBLISH', KEYS[2], ARGV[1])"
    conn, pubsub = subscriber(owner)
    with shared_cluster.client() as client, conn:
        assert client.eval(script, 2, "{t}:k", CHANNEL, "from-lua") == 1
        assert next_message(pubsub) == smessage("smessage", b"from-lua")
        assert client.get("{t}:k") == b"from-lua"
        with pytest.raises(redis.ResponseError, match="non local key"):
            client.eval("return redis.call('SPUBLISH', ARGV[1], 'x')", 1, "{t}:k", far)
        pubsub.close()


def test_a_shard_subscriber_is_sunsubscribed_when_its_slot_migrates_away(
    real_cluster: ClusterProcess,
) -> None:
    slot = real_cluster.slot_of(CHANNEL)
    source = real_cluster.owner(slot)
    conn, pubsub = subscriber(source)
    with real_cluster.client() as client, conn:
        target = next(m for m in real_cluster.masters() if m is not source)
        real_cluster.migrate_slot(slot, target)
        # Redis 7.0 and 8.2 and Valkey 8.1 alike: a push, count 0 left
        assert next_message(pubsub) == smessage("sunsubscribe", 0)
        # redis-py forgets only channels it asked to leave: it still believes it listens
        assert pubsub.subscribed and CHANNEL.encode() in pubsub.shard_channels
        assert conn.execute_command("PUBSUB", "SHARDNUMSUB", CHANNEL) == [CHANNEL.encode(), 0]
        assert client.spublish(CHANNEL, "lost") == 0  # nobody listens on the new owner
        with pytest.raises(MovedError) as moved:
            conn.spublish(CHANNEL, "x")  # the old owner redirects to the new one
        assert (moved.value.slot_id, moved.value.port) == (slot, target.port)
        pubsub.close()


def test_a_manual_failover_sunsubscribes_the_old_masters_shard_subscribers(
    real_cluster: ClusterProcess,
) -> None:
    old = real_cluster.owner(real_cluster.slot_of(CHANNEL))
    new = real_cluster.replica_of(old)
    on_old, old_sub = subscriber(old)
    on_new, new_sub = subscriber(new)
    with on_old, on_new, new.client() as publisher:
        real_cluster.failover(new)
        assert next_message(old_sub) == smessage("sunsubscribe", 0)
        publisher.spublish(CHANNEL, "after")
        assert next_message(new_sub) == promoted_replica_sees(real_cluster.kind)
        old_sub.close()
        new_sub.close()


def test_kill_master_breaks_its_subscribers_connection(real_cluster: ClusterProcess) -> None:
    victim = real_cluster.owner(real_cluster.slot_of(CHANNEL))
    heir = real_cluster.replica_of(victim)
    # Without retries: redis-py's default ones (about 3.7 s here) end in the same error
    on_victim, victim_sub = subscriber(victim, retry=Retry(NoBackoff(), 0))
    on_heir, heir_sub = subscriber(heir)
    with on_victim, on_heir, heir.client() as publisher:
        real_cluster.kill_master(victim)
        with pytest.raises(redis.ConnectionError):
            victim_sub.get_message(timeout=1.0)
        publisher.spublish(CHANNEL, "after")
        assert next_message(heir_sub) == promoted_replica_sees(real_cluster.kind)
        victim_sub.close()
        heir_sub.close()


def promoted_replica_sees(kind: Kind) -> dict[str, Any]:
    """What a shard subscriber of a replica gets first once the replica is master and a
    message was published: Valkey 8.1 and Redis 8.2 drop such subscribers as it takes over
    the slots (a push, count 0); Redis 7.0 keeps them, so the message itself arrives."""
    drops = kind in ("valkey", "redis8")
    return smessage("sunsubscribe", 0) if drops else smessage("smessage", b"after")


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"kind": "memcached"}, "kind must be"),
        ({"masters": 2}, "masters must be"),
        ({"replicas_per_master": -1}, "replicas_per_master must be"),
        ({"node_timeout_ms": 10}, "node_timeout_ms must be"),
    ],
)
def test_a_bad_shape_is_refused_naming_the_argument(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ClusterProcess(**options)


def test_a_missing_server_binary_or_cli_is_a_clear_cluster_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster_servers, "binary", lambda kind: None)
    with pytest.raises(ClusterUnavailable, match="no redis server binary"):
        ClusterProcess("redis").start()
    monkeypatch.setattr(cluster_servers, "binary", lambda kind: "/nonexistent/redis-server")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ClusterUnavailable, match="no redis-cli"):
        ClusterProcess("redis").start()


@pytest.mark.parametrize("kind", REAL_PARAMS)
def test_a_server_without_cluster_mode_is_refused(kind: Kind) -> None:
    require_cluster(kind)
    with ServerProcess(kind) as plain, pytest.raises(ClusterUnavailable, match="cluster mode"):
        require_cluster_mode(plain)


def test_cluster_nodes_lines_parse_with_bus_ports_hostnames_and_migrations() -> None:
    text = (
        "aa 127.0.0.1:7000@17000,host myself,master - 0 0 1 connected 0-5460 [5461->-bb]\n"
        "bb 127.0.0.1:7001@17001 slave,fail? aa 0 0 1 connected\n"
        "cc 127.0.0.1:7002@17002 master - 0 0 2 connected 5461 10923-16383\n"
    )
    views = parse_nodes(text)
    assert views["aa"].slots == ((0, 5460),) and views["aa"].port == 7000
    assert views["bb"].master_id == "aa" and views["bb"].failing and not views["bb"].is_master
    assert views["cc"].slots == ((5461, 5461), (10923, 16383))


# -- python -m cachelab.harness.cluster_servers ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "signum"),
    [
        pytest.param("redis", signal.SIGTERM, marks=pytest.mark.real_redis),
        pytest.param("valkey", signal.SIGINT, marks=pytest.mark.real_redis),  # Ctrl-C
    ],
)
def test_the_command_prints_seeds_of_a_working_cluster_and_a_signal_stops_it(
    kind: Kind, signum: signal.Signals
) -> None:
    require_cluster(kind)
    proc = python(["-m", "cachelab.harness.cluster_servers", "--kind", kind])
    seeds: list[str] = []
    try:
        seeds = read_seeds(proc)
        assert len(seeds) == 6
        with redis.RedisCluster.from_url(f"redis://{seeds[0]}") as client:
            client.set("k", "v")
            assert client.get("k") == b"v"
        proc.send_signal(signum)
        assert proc.wait(30) == 0
        assert not any(answers(seed) for seed in seeds)  # every node went with it
    finally:
        stop(proc, seeds)


CRASH = """
from cachelab.harness.cluster_servers import ClusterProcess
cluster = ClusterProcess("redis").start()
cluster.nodes[-1].kill()  # a dead node's directory must go too
print("seeds", *cluster.seeds)
print("dirs", *[node.dir for node in cluster.nodes], flush=True)
raise RuntimeError("a test crashed without closing its cluster")
"""


@pytest.mark.real_redis
def test_a_script_that_crashes_leaves_no_node_running_and_no_directory() -> None:
    require_cluster("redis")
    proc = python(["-c", CRASH])
    seeds: list[str] = []
    try:
        seeds = read_seeds(proc)
        assert proc.stdout is not None
        dirs = proc.stdout.readline().split()[1:]
        assert proc.wait(30) == 1  # the exception's exit status
        assert len(dirs) == 6 and not any(Path(d).exists() for d in dirs)
        assert not any(answers(seed) for seed in seeds)
    finally:
        stop(proc, seeds)


def python(args: list[str]) -> subprocess.Popen[str]:
    """This interpreter on ``args``, importing this checkout's cachelab; stdout piped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def read_seeds(proc: subprocess.Popen[str]) -> list[str]:
    """The seeds the command printed (it prints them once the cluster is ready)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("seeds "):
            return line.split()[1:]
    raise AssertionError(f"the command ended without printing seeds (exit {proc.wait()})")


def answers(seed: str) -> bool:
    """True if a server answers PING on ``host:port``."""
    host, port = seed.rsplit(":", 1)
    probe = redis.Redis(host, int(port), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    try:
        return bool(probe.ping())
    except redis.ConnectionError:
        return False
    finally:
        probe.close()


def stop(proc: subprocess.Popen[str], seeds: list[str]) -> None:
    """Whatever happened, end the command and any node it left (found by its port)."""
    if proc.poll() is None:
        proc.kill()  # no cleanup: so its nodes are killed below
        proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()
    for seed in seeds:
        if answers(seed):
            host, port = seed.rsplit(":", 1)
            with redis.Redis(host, int(port)) as conn:
                os.kill(int(conn.info("server")["process_id"]), signal.SIGKILL)
