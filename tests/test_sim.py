"""The simulator: determinism, phased reads, the network model, faults, trace and replay."""

from __future__ import annotations

from collections import Counter

import pytest

from cachelab.check import stale_reads
from cachelab.history import Op
from cachelab.sim import (
    KINDS,
    Fault,
    Network,
    Partition,
    Request,
    SimResult,
    Simulation,
    TraceEvent,
)
from cachelab.sim.workloads import every, merge, zipf


def _run(requests: list[Request], **options: object) -> SimResult:
    """Run a scripted workload without a progress bar."""
    return Simulation(progress=False, **options).run(workload=requests)  # type: ignore[arg-type]


def _kinds(result: SimResult, kind: str) -> list[TraceEvent]:
    return [e for e in result.trace if e.kind == kind]


# -- the public face and determinism -------------------------------------------------


def test_default_run_returns_history_report_and_trace() -> None:
    result = Simulation(nodes=4, strategy="invalidate", seed=7, progress=False).run(ops=2000)
    report = result.report.to_dict()
    assert len(result.history) == 2000
    assert report["reads"] + report["writes"] == 2000
    assert {"reads", "stale_reads", "stale_fraction", "nines", "hit_rate"} <= report.keys()
    assert 0.0 < report["hit_rate"] < 1.0
    assert isinstance(result.trace, tuple)
    assert all(isinstance(e, TraceEvent) and e.kind in KINDS for e in result.trace)


def test_same_seed_gives_identical_history_report_and_trace() -> None:
    def once() -> SimResult:
        network = Network(delay=0.002, jitter=0.001, loss=0.05, duplicate=0.05, reorder=0.05)
        sim = Simulation(nodes=5, strategy="update", seed=11, network=network, max_entries=50)
        return sim.run(ops=3000, progress=False)

    first, second = once(), once()
    assert first.history == second.history
    assert first.report == second.report
    assert first.trace == second.trace
    assert first.caches == second.caches


def test_another_seed_gives_another_run() -> None:
    def history(seed: int) -> list[object]:
        return list(Simulation(nodes=3, seed=seed, progress=False).run(ops=500).history)

    assert history(1) != history(2)


def test_node_ids_with_their_random_token_never_reach_trace_or_history() -> None:
    result = Simulation(nodes=3, seed=3, progress=False).run(ops=500)
    assert not any("#" in str(field) for event in result.trace for field in event)
    assert {op.node for op in result.history} <= set(result.nodes)


def test_trace_is_in_time_order_and_deliveries_carry_their_send_time() -> None:
    network = Network(delay=0.003, jitter=0.002)
    result = Simulation(nodes=4, seed=2, network=network, progress=False).run(ops=1000)
    times = [e.t for e in result.trace]
    assert times == sorted(times)
    for event in _kinds(result, "deliver"):
        assert 0.003 <= event.t - event.since <= 0.005 + 1e-12


def test_stale_reads_in_the_trace_match_the_report() -> None:
    result = Simulation(nodes=4, seed=5, network=Network(delay=0.01), progress=False).run(ops=2000)
    assert result.report.stale_reads > 0
    assert len(_kinds(result, "stale_read")) == result.report.stale_reads


# -- reads in virtual time ---------------------------------------------------------------


def test_a_miss_takes_the_store_latency_and_a_hit_takes_none() -> None:
    result = _run([Request(1.0, 0, "read", "k"), Request(2.0, 0, "read", "k")], nodes=1)
    miss, hit = result.history
    assert (miss.start, miss.end, miss.hit) == (1.0, 1.0 + 0.0005, False)
    assert (hit.start, hit.end, hit.hit) == (2.0, 2.0, True)


def test_a_request_can_override_its_store_latency() -> None:
    result = _run([Request(1.0, 0, "read", "k", latency=0.25)], nodes=1)
    assert result.history[0].end == 1.25


def test_later_misses_on_one_node_join_the_load_in_flight() -> None:
    reads = [Request(0.0, 0, "read", "k", latency=0.1), Request(0.05, 0, "read", "k")]
    result = _run(reads, nodes=1)
    assert len(result.store_reads) == 1
    first, joined = result.history
    assert first.end == joined.end == 0.1
    assert joined.start == 0.05
    assert [e.detail for e in _kinds(result, "read")] == ["miss", "joined"]


def test_without_single_flight_every_miss_reads_the_store() -> None:
    reads = [Request(0.0, 0, "read", "k", latency=0.1), Request(0.05, 0, "read", "k")]
    assert len(_run(reads, nodes=1, single_flight=False).store_reads) == 2


def test_a_write_during_a_slow_read_is_caught_by_the_fill_guard() -> None:
    script = [
        Request(0.0, 0, "write", "k"),
        Request(0.1, 1, "read", "k", latency=0.05),
        Request(0.11, 0, "write", "k"),
    ]
    guarded = _run(script, nodes=2)
    assert [e.node for e in _kinds(guarded, "fill_rejected")] == ["b"]
    assert "k" not in guarded.caches["b"]
    unguarded = _run(script, nodes=2, fill_guard=False, tombstones=False)
    assert unguarded.caches["b"] == {"k": 1}


# -- writes and the bus ---------------------------------------------------------------


def test_a_write_is_sent_once_and_delivered_to_every_node() -> None:
    result = _run([Request(0.0, 1, "write", "k", value="v")], nodes=3)
    assert [(e.node, e.version, e.detail) for e in _kinds(result, "write")] == [("b", 1, "set")]
    assert len(_kinds(result, "send")) == 1
    details = {e.node: e.detail for e in _kinds(result, "deliver")}
    assert details == {"a": "set:applied", "b": "set:own", "c": "set:applied"}
    assert result.history[0][:6] == ("b", "write", "k", 0.0, 0.0, 1)


def test_an_external_write_takes_a_version_but_sends_nothing() -> None:
    result = _run([Request(0.0, -1, "external", "k")], nodes=2)
    assert result.history[0].node == "external"
    assert result.history[0].version == 1
    assert not _kinds(result, "send")


def test_lost_messages_are_dropped_and_traced_with_their_send_time() -> None:
    result = _run([Request(1.0, 0, "write", "k")], nodes=3, network=Network(delay=0.01, loss=1.0))
    assert result.delivered == 0
    drops = _kinds(result, "drop")
    assert [(e.detail, e.since, e.t) for e in drops] == [("loss", 1.0, 1.01)] * 3


def test_duplicates_are_delivered_twice_and_ignored_the_second_time() -> None:
    script = [Request(0.0, 0, "read", "k"), Request(1.0, 1, "write", "k")]
    result = _run(script, nodes=2, network=Network(duplicate=1.0))
    at_a = [e.detail for e in _kinds(result, "deliver") if e.node == "a"]
    assert at_a == ["set:applied", "set:outdated"]


def test_each_subscriber_receives_in_publish_order_unless_reordered() -> None:
    writes = [Request(i * 0.0001, 0, "write", f"k{i}") for i in range(200)]

    def order(network: Network) -> list[int]:
        result = _run(writes, nodes=2, network=network, seed=1)
        return [e.version for e in _kinds(result, "deliver") if e.node == "b"]

    assert order(Network(delay=0.001, jitter=0.005)) == list(range(1, 201))
    shuffled = order(Network(delay=0.001, jitter=0.005, reorder=0.3))
    assert sorted(shuffled) == list(range(1, 201)) and shuffled != sorted(shuffled)


def test_a_partition_drops_messages_silently() -> None:
    script = [Request(t, 0, "write", "k") for t in (0.5, 1.5, 2.5)]
    network = Network(partitions=(Partition(1, 1.0, 2.0),))
    result = _run(script, nodes=2, network=network)
    drops = _kinds(result, "drop")
    assert [(e.node, e.version, e.detail) for e in drops] == [("b", 2, "partition")]
    assert [e.detail for e in _kinds(result, "partition")] == ["start", "heal"]
    assert not _kinds(result, "disconnect")
    assert result.stats["b"].gaps == 1  # the message after the heal skips a number


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("repair", [True, False], ids=["repair", "flush"])
def test_a_disconnect_is_reported_and_recovered_and_its_messages_are_lost(repair: bool) -> None:
    script = [Request(0.5, 1, "read", "k"), Request(1.5, 0, "write", "k")]
    faults = [Fault(1.0, "disconnect", 1, 1.0)]
    result = _run(script, nodes=2, faults=faults, repair=repair)
    assert [(e.t, e.node) for e in _kinds(result, "disconnect")] == [(1.0, "b")]
    assert [(e.t, e.node) for e in _kinds(result, "reconnect")] == [(2.0, "b")]
    assert [e.detail for e in _kinds(result, "drop")] == ["disconnected"]
    b = result.stats["b"]
    if repair:  # k left trust at the disconnect; at the reconnect repair found it changed
        assert (b.flushes, b.suspected, b.repair_checks, b.repair_dropped) == (0, 1, 1, 1)
        assert [(e.t, e.key) for e in _kinds(result, "repair_drop")] == [(2.0, "k")]
    else:
        assert (b.flushes, b.repair_checks) == (2, 0)


def test_a_crashed_node_skips_requests_and_restarts_empty() -> None:
    script = [
        Request(0.1, 1, "read", "k"),
        Request(0.9, 1, "read", "slow", latency=0.5),
        Request(1.2, 1, "read", "k"),
        Request(3.0, 1, "read", "k"),
    ]
    result = _run(script, nodes=2, faults=[Fault(1.0, "crash", 1, 1.0)])
    assert result.skipped == 1
    assert [e.kind for e in result.trace if e.kind in ("crash", "restart")] == ["crash", "restart"]
    reads = [(op.key, op.start, op.hit) for op in result.history]
    assert reads == [("k", 0.1, False), ("k", 3.0, False)]  # the slow read died with b


def test_a_redis_restart_loses_data_and_sequence_and_reconnects_everyone() -> None:
    script = [
        Request(0.1, 0, "write", "k"),
        Request(0.2, 0, "write", "k"),
        Request(2.0, 1, "write", "x"),
    ]
    result = _run(script, nodes=3, faults=[Fault(1.0, "redis_restart", duration=0.5)])
    assert len(_kinds(result, "disconnect")) == len(_kinds(result, "reconnect")) == 3
    assert [e.version for e in _kinds(result, "reconnect")] == [3] * 3  # store seq 0, offset 3
    ops = [(op.node, op.op, op.key, op.version) for op in result.history]
    assert ops == [  # Redis's sequence starts again at 1, the history's goes on after 2 + 1
        ("a", "write", "k", 1),
        ("a", "write", "k", 2),
        ("redis", "delete", "k", 3),
        ("b", "write", "x", 4),
    ]
    assert all(stats.resets == 1 and stats.flushes == 0 for stats in result.stats.values())
    assert [e.key for e in _kinds(result, "repair_drop")] == ["k"]  # a's lost value


def test_garbage_is_counted_and_dropped_by_the_real_node() -> None:
    result = _run([], nodes=2, faults=[Fault(0.5, "garbage", 1, data=b"\x00not json")])
    assert result.stats["b"].messages_invalid == 1
    assert [e.node for e in _kinds(result, "garbage")] == ["b"]


# -- cache-aside and leases ------------------------------------------------------------------


def test_cache_aside_reads_the_database_and_reports_its_versions() -> None:
    script = [
        Request(0.0, 0, "write", "k"),
        Request(0.1, 1, "read", "k"),
        Request(0.2, 0, "read", "k"),
    ]
    result = _run(script, nodes=2, database=True)
    assert len(result.db_loads) == 1  # a finds b's value in Redis
    assert [op.version for op in result.history] == [1, 1, 1]
    assert [e.detail for e in _kinds(result, "write")] == ["fill"]


def test_a_lease_lets_one_reader_query_the_database() -> None:
    reads = [Request(0.0001 * n, n, "read", "hot") for n in range(4)]
    plain = _run(reads, nodes=4, database=True)
    leased = _run(reads, nodes=4, database=True, lease=True)
    assert (len(plain.db_loads), len(leased.db_loads)) == (4, 1)
    assert {e.node for e in _kinds(leased, "lease")} == {"b", "c", "d"}  # they retry Redis
    assert len(leased.history) == 4


# -- the trace replay ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["invalidate", "update", "stream"])
def test_replaying_the_trace_rebuilds_every_cache(strategy: str) -> None:
    network = Network(delay=0.002, jitter=0.002, loss=0.1, reorder=0.1)
    faults = [Fault(0.05, "disconnect", 1, 0.01), Fault(0.08, "crash", 2, 0.01)]
    sim = Simulation(
        nodes=4, strategy=strategy, seed=3, network=network, max_entries=20, faults=faults
    )
    result = sim.run(workload=zipf(3000, 4, keys=60, read_ratio=0.8, seed=3), progress=False)
    assert result.caches_at(len(result.trace)) == result.caches
    assert result.caches_at(0) == {name: {} for name in result.nodes}


def test_the_replay_drops_entries_whose_ttl_has_passed() -> None:
    script = list(merge([Request(0.0, 0, "read", "k")], every(0.1, 0.1, 0.45, 1, "read", "x")))
    result = _run(script, nodes=2, ttl=0.3)
    index = max(i for i, e in enumerate(result.trace) if e.t < 0.45) + 1  # b fills x at 0.4005
    assert result.caches_at(index)["a"] == {}
    assert result.caches_at(2)["a"] == {"k": 0}


# -- progress and errors ---------------------------------------------------------------------------


def test_long_runs_show_a_progress_bar_unless_turned_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Simulation(nodes=2, seed=1).run(ops=10_000)
    assert "simulating" in capsys.readouterr().err
    Simulation(nodes=2, seed=1).run(ops=10_000, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([Request(1.0, 0, "read", "k"), Request(0.5, 0, "read", "k")], "back in time"),
        ([Request(0.0, 0, "fly", "k")], "unknown op"),
        ([Request(0.0, 5, "read", "k")], "node 5"),
    ],
)
def test_bad_workloads_are_refused(requests: list[Request], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _run(requests, nodes=2)


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown node options"):
        Simulation(nodes=2, colour="red")
    with pytest.raises(ValueError, match="database"):
        Simulation(nodes=2, lease=True)
    with pytest.raises(ValueError, match="unknown fault"):
        Simulation(nodes=2, faults=[Fault(0.0, "meteor")])
    with pytest.raises(ValueError, match="probability"):
        Network(loss=1.5)
    with pytest.raises(ValueError, match="ops="):
        Simulation().run()


def test_node_options_reach_the_real_nodes() -> None:
    result = _run([Request(0.0, 0, "read", f"k{i}") for i in range(5)], nodes=1, max_entries=2)
    assert result.stats["a"].evictions == 3
    assert Counter(e.kind for e in result.trace)["evict"] == 3


# -- Redis restarts: versions stay comparable ---------------------------------------------


def _cached_then_restart(**options: object) -> SimResult:
    """b caches k (written by a), Redis restarts at 1.0, b reads k again at 1.5."""
    script = [
        Request(0.1, 0, "write", "k"),
        Request(0.2, 1, "read", "k"),
        Request(1.5, 1, "read", "k"),
    ]
    return _run(script, nodes=2, faults=[Fault(1.0, "redis_restart")], **options)


def test_after_a_restart_a_read_that_finds_nothing_is_newer_than_every_write() -> None:
    result = _cached_then_restart()
    before, after = result.history[1], result.history[-1]
    assert (before.version, before.hit) == (1, False)
    assert (after.version, after.hit) == (2, False)  # store seq 0 + offset 2: the lost data
    assert result.history[2][:6] == ("redis", "delete", "k", 1.0, 1.0, 2)
    assert result.report.stale_reads == 0


def test_a_value_cached_before_a_restart_and_served_after_it_is_stale() -> None:
    result = _cached_then_restart(reconnect_flush=False, gap_detection=False)
    after = result.history[-1]
    assert (after.version, after.hit) == (1, True)  # Redis no longer holds version 1
    assert stale_reads(result.history) == [(after, 0.5)]  # behind since the restart
    assert [e.version for e in _kinds(result, "stale_read")] == [1]


def test_a_node_that_misses_the_restart_rejects_newer_writes_and_stays_stale() -> None:
    script = [
        Request(0.1, 0, "write", "k"),
        Request(0.2, 0, "write", "k"),
        Request(0.3, 1, "read", "k"),
        Request(1.2, 0, "write", "k"),
        Request(1.5, 1, "read", "k"),
    ]
    faults = [Fault(1.0, "redis_restart")]
    options = {"nodes": 2, "strategy": "update", "faults": faults}
    blind = _run(script, reconnect_flush=False, gap_detection=False, **options)
    at_b = [(e.version, e.detail) for e in _kinds(blind, "deliver") if e.node == "b"]
    assert at_b[-1] == (4, "set:outdated")  # the node compares Redis's real seqs: 1 < 2
    assert [op.version for op in blind.history if op.node == "b"] == [2, 2]
    assert blind.report.stale_reads == 1
    # even the writer keeps its old entry: its own fill at seq 1 is refused, as outdated
    assert blind.caches == blind.caches_at(len(blind.trace)) == {"a": {"k": 2}, "b": {"k": 2}}
    safe = _run(script, **options)
    assert [op.version for op in safe.history if op.node == "b"] == [2, 4]
    assert safe.report.stale_reads == 0


def test_cache_aside_keeps_the_database_versions_across_a_redis_restart() -> None:
    script = [
        Request(0.0, 0, "write", "k"),
        Request(0.1, 1, "read", "k"),
        Request(1.5, 1, "read", "k"),
    ]
    result = _run(script, nodes=2, database=True, faults=[Fault(1.0, "redis_restart")])
    assert [(op.node, op.version) for op in result.history] == [("a", 1), ("b", 1), ("b", 1)]
    assert len(result.db_loads) == 2  # the restart lost the cached copy, not the data
    assert [e.version for e in _kinds(result, "write")] == [1, 3]  # store seq 1, offset 2


def _zipf_with_restart(network: Network, **options: object) -> SimResult:
    """One virtual second of Zipf requests on 4 nodes; Redis restarts at 0.5 s."""
    faults = [Fault(0.5, "redis_restart")]
    sim = Simulation(nodes=4, seed=5, network=network, faults=faults, **options)  # type: ignore[arg-type]
    return sim.run(progress=False, workload=zipf(10_000, 4, keys=200, read_ratio=0.95, seed=5))


_BLIND = {"reconnect_flush": False, "gap_detection": False}


def test_with_instant_messages_a_restart_makes_no_stale_read_unless_nodes_are_blind() -> None:
    # with no delay every message lands before the next request, so the steady run has none
    safe = _zipf_with_restart(Network(delay=0.0))
    assert any(op.node == "redis" for op in safe.history)
    assert safe.report.stale_reads == 0
    blind = _zipf_with_restart(Network(delay=0.0), **_BLIND)
    assert blind.report.stale_reads > 100
    assert blind.report.staleness_max > 0.1


def test_with_a_message_delay_a_restart_adds_no_staleness_beyond_the_delay() -> None:
    network = Network(delay=0.001)
    safe = _zipf_with_restart(network)
    assert safe.report.stale_reads > 0  # reads of peers in the 1 ms before a message lands
    assert safe.report.staleness_max <= network.worst_case
    blind = _zipf_with_restart(network, **_BLIND)
    assert blind.report.staleness_max > 100 * network.worst_case


@pytest.mark.parametrize("strategy", ["invalidate", "update"])
def test_runs_with_redis_restarts_are_deterministic_and_replay(strategy: str) -> None:
    def once() -> SimResult:
        network = Network(delay=0.002, jitter=0.001, loss=0.05, reorder=0.05)
        faults = [Fault(0.1, "redis_restart", duration=0.01), Fault(0.2, "redis_restart")]
        sim = Simulation(
            nodes=4,
            strategy=strategy,
            seed=9,
            network=network,
            faults=faults,
            reconnect_flush=False,
            gap_detection=False,
        )
        return sim.run(workload=zipf(3000, 4, keys=60, read_ratio=0.9, seed=9), progress=False)

    first, second = once(), once()
    assert first.history == second.history
    assert first.trace == second.trace
    assert first.caches == second.caches == first.caches_at(len(first.trace))
    writes = [op for op in first.history if op.op != "read"]  # in time order
    versions = [op.version for op in writes]
    assert versions == sorted(versions)  # rising across both restarts
    deleted = {op.version for op in writes if op.node == "redis"}
    by_nodes = [op.version for op in writes if op.node != "redis"]
    assert len(deleted) == 2  # one version per restart, for every key it lost
    assert len(set(by_nodes) | deleted) == len(by_nodes) + 2  # no version is given twice


# -- the stream strategy: the same nodes, reading the store's stream by cursor -------------


def _blip(**options: object) -> SimResult:
    """b caches k and x; its subscription is down from 1.0 s to 1.2 s, while a writes k
    (and, with a small cap, enough more to trim the stream past b's last id); b polls k."""
    script = [Request(0.0, 0, "write", "k"), Request(0.0, 0, "write", "x")]
    script += [Request(0.1, 1, "read", "k"), Request(0.1, 1, "read", "x")]
    script += [Request(1.05 + 0.001 * i, 0, "write", "y") for i in range(5)]
    script += [Request(1.1, 0, "write", "k")]
    requests = merge(script, every(0.05, 1.3, 2.0, 1, "read", "k"), [Request(2.0, 1, "read", "x")])
    faults = [Fault(1.0, "disconnect", 1, 0.2)]
    return _run(list(requests), nodes=2, strategy="stream", faults=faults, **options)


def test_a_stream_node_replays_what_it_missed_and_trusts_the_rest_again() -> None:
    result = _blip()
    b = result.stats["b"]
    assert result.report.stale_reads == 0 and result.dropped == 0
    assert (b.replays, b.restored, b.flushes, b.gaps, b.repair_checks) == (1, 1, 0, 0, 0)
    assert result.metrics()["repair_checks"] == 0
    replayed = [e for e in _kinds(result, "deliver") if e.node == "b" and e.since < 1.2 < e.t]
    assert len(replayed) == 6  # the five y and k, sent during the blip, read at the replay
    assert [e.node for e in _kinds(result, "restore")] == ["b"]
    assert result.history[-1].hit  # x stayed warm through the blip


def test_a_stream_trimmed_past_the_last_id_is_a_gap_and_a_repair() -> None:
    result = _blip(stream_maxlen=3)
    b = result.stats["b"]
    assert result.report.stale_reads == 0
    assert (b.replays, b.gaps, b.restored, b.flushes) == (1, 1, 0, 0)
    assert b.repair_checks == 1 and b.repair_kept == 1  # x: unchanged, kept warm
    assert result.history[-1].hit


def test_on_the_stream_loss_is_delay_and_a_partition_defers() -> None:
    network = Network(delay=0.002, loss=0.3, partitions=(Partition(1, 0.2, 0.4),))
    sim = Simulation(nodes=3, strategy="stream", seed=4, network=network, progress=False)
    result = sim.run(workload=zipf(3000, 3, keys=50, read_ratio=0.8, seed=4))
    assert result.dropped == 0 and not _kinds(result, "drop")
    assert sum(s.gaps + s.flushes + s.repair_checks for s in result.stats.values()) == 0
    assert result.caches_at(len(result.trace)) == result.caches
    late = [e for e in _kinds(result, "deliver") if e.node == "b" and e.since < 0.4 <= e.t]
    assert late  # held back by the partition, delivered when it healed


def test_stream_maxlen_is_checked_in_the_simulator_too() -> None:
    with pytest.raises(ValueError, match="stream_maxlen must be a positive int"):
        Simulation(nodes=2, strategy="stream", stream_maxlen=0, progress=False).run(ops=10)
    with pytest.raises(ValueError, match="stream_maxlen is for strategy 'stream'"):
        Simulation(nodes=2, strategy="update", stream_maxlen=10, progress=False).run(ops=10)


def test_the_simulators_ops_have_every_field_of_an_op() -> None:
    """The hot path builds ops with tuple.__new__, which skips a NamedTuple's defaults."""
    result = Simulation(nodes=2, seed=3, progress=False).run(ops=200)
    assert result.history and all(len(op) == len(Op._fields) for op in result.history)
    assert all(op.inc == "" for op in result.history if op.op == "read")
    repr(result.history)  # every op prints (a short tuple raised TypeError)


def test_a_read_joins_a_load_only_while_a_real_node_would() -> None:
    """The simulator drives the node's own miss plan, so a load's reply counts when it
    arrives, as in CacheNode: until then a peer's message about the key overtakes the load
    (the node cannot know the reply already holds that write), and a read loads again
    instead of joining it."""
    net = Network(delay=0.001)
    workload = [
        Request(0.0, 1, "write", "k", value=5),  # b's message reaches a at 1 ms
        Request(0.0005, 0, "read", "k", latency=0.010),  # a's load reads v1; its reply: 10.5 ms
        Request(0.0008, 0, "read", "k"),  # joins a's load
        Request(0.002, 0, "read", "k"),  # the load is overtaken by then: a loads again
    ]
    result = Simulation(nodes=2, seed=1, network=net, progress=False).run(workload=workload)
    reads = [e for e in result.raw_trace if e.kind == "read" and e.node == "a"]
    assert [(e.since, e.detail) for e in reads] == [
        (0.002, "miss"),
        (0.0005, "miss"),
        (0.0008, "joined"),
    ]
    assert all(e.version == 1 for e in reads)
