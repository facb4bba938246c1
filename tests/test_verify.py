"""verify=: the live staleness sampler, alone, in a threaded node, and against the checker."""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Sequence
from typing import Any

import fakeredis
import pytest
import redis

from cachelab import CacheNode, Cluster, TrackingNode
from cachelab.check import stale_reads
from cachelab.contract import KeyState, Meta
from cachelab.history import READ
from cachelab.messages import ABSENT, encode_value, value_digest
from cachelab.sampler import Sampler, VerifyThread, judge
from cachelab.sim import Network, Simulation
from cachelab.sim.store import MemoryStore
from cachelab.sim.workloads import zipf
from cachelab.stats import NodeStats, wilson
from cachelab.store import RedisStore
from tests.helpers import NodeFactory, listener, phases, settle, wait_for

META = Meta("inc-1", 100)


def digest(value: Any) -> str:
    return value_digest(value)


def verifier_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("cachelab-verify")]


# -- the option ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-0.5, ValueError),
        (1.01, ValueError),
        (2, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, TypeError),
        ("0.1", TypeError),
        ([0.1], TypeError),
    ],
)
def test_verify_takes_a_fraction_of_hits_or_none(bad: Any, error: type[Exception]) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with pytest.raises(error, match=r"verify must be a fraction of hits in \(0, 1\]"):
        CacheNode(client, name="a", strategy="none", verify=bad)
    with pytest.raises(error, match="verify must be"):
        Sampler(bad)
    assert verifier_threads() == []


@pytest.mark.parametrize(
    "options",
    [{"capacity": 0}, {"batch": -1}, {"batch": 1.5}, {"interval": 0}, {"interval": math.inf}],
)
def test_the_samplers_other_options_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Sampler(0.1, **options)
    with pytest.raises(TypeError, match="random must be callable"):
        Sampler(0.1, random=0.5)  # type: ignore[arg-type]


def test_a_sampler_serves_one_node() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    sampler = Sampler(1.0, interval=3600.0)
    with CacheNode(client, name="a", strategy="none", verify=sampler) as a:
        assert a.sampler is sampler
        with pytest.raises(ValueError, match="already serves node 'a'"):
            CacheNode(client, name="b", strategy="none", verify=sampler)


def test_by_default_nothing_is_sampled_and_no_thread_starts(make_node: NodeFactory) -> None:
    a = make_node("a")
    a.set("k", 1)
    assert a.get("k") == 1
    assert a.sampler is None
    assert verifier_threads() == []
    stats = a.stats
    assert (stats.sampled, stats.verified, stats.verified_stale) == (0, 0, 0)
    assert stats.stale_estimate == 0.0
    assert stats.stale_interval == (0.0, 1.0)
    assert phases(a).verify_pending() == 0


# -- the Sampler alone ---------------------------------------------------------------------


def test_rate_one_samples_every_hit() -> None:
    sampler = Sampler(1.0, random=lambda: 0.99)
    assert all(sampler.hit() for _ in range(100))
    assert sampler.gap() == 1


def test_gaps_follow_the_injected_random_source() -> None:
    # The gap is geometric: 1 + floor(log(1 - u) / log(1 - rate)).
    assert Sampler(0.5, random=lambda: 0.0).gap() == 1
    assert Sampler(0.5, random=lambda: 0.5).gap() == 2
    assert Sampler(0.5, random=lambda: 0.75).gap() == 3
    assert Sampler(0.1, random=lambda: 0.0).gap() == 1
    draws = iter([0.0, 0.5, 0.75, 0.0])  # the first gap is drawn when the sampler is built
    sampler = Sampler(0.5, random=lambda: next(draws))
    picks = [sampler.hit() for _ in range(6)]
    assert picks == [True, False, True, False, False, True]


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_the_sampled_share_of_hits_is_the_rate(rate: float) -> None:
    hits = 200_000
    sampler = Sampler(rate, random=random.Random(11).random)
    picked = sum(sampler.hit() for _ in range(hits))
    sigma = math.sqrt(hits * rate * (1 - rate))
    assert abs(picked - hits * rate) < 4 * sigma  # a fixed seed: the same count every run


def test_the_queue_is_bounded_and_counts_what_it_drops() -> None:
    sampler = Sampler(1.0, capacity=3, batch=2)
    accepted = [sampler.offer(key) for key in ("a", "b", "c", "d", "e")]
    assert accepted == [True, True, True, False, False]
    assert (sampler.pending, sampler.sampled, sampler.dropped) == (3, 5, 2)
    assert sampler.take() == ["a", "b"]  # oldest first, a batch at a time
    assert sampler.take(5) == ["c"]
    assert sampler.take() == []
    assert sampler.offer("f")


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 0, 0.0, 1.0),
        (0, 10, 0.0, 0.27753),
        (10, 10, 0.72247, 1.0),
        (5, 10, 0.23659, 0.76341),
        (0, 100, 0.0, 0.03699),
        (100, 100, 0.96301, 1.0),
        (1, 1000, 0.00017655, 0.0056426),
    ],
)
def test_wilson_interval(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(low, abs=1e-5)
    assert hi == pytest.approx(high, abs=1e-5)
    assert 0.0 <= lo <= (k / n if n else 0.0) <= hi <= 1.0


def test_wilson_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="0 <= k <= n"):
        wilson(3, 2)


# -- the rules of judgement -------------------------------------------------------------


def test_an_entry_the_store_has_not_moved_past_is_fresh() -> None:
    assert judge(META, (7, digest("v")), ("v", 7, math.inf), "inc-1") is False


def test_an_entry_older_than_the_stores_version_is_stale() -> None:
    assert judge(META, (9, digest("w")), ("v", 7, math.inf), "inc-1") is True


def test_a_value_replaced_in_place_under_the_same_version_is_stale() -> None:
    # A writer that bypassed the write script: no new version, another value.
    assert judge(META, (7, digest("w")), ("v", 7, math.inf), "inc-1") is True
    assert judge(META, (7, digest("v")), ("v", 7, math.inf), "inc-1") is False
    # The node may hold a newer version than the store showed (it refilled after the check).
    assert judge(META, (7, digest("v")), ("w", 9, math.inf), "inc-1") is False


def test_a_deleted_key_makes_a_held_value_stale() -> None:
    # An absent key checks as the store's current sequence number, with an empty digest.
    assert judge(META, (100, ""), ("v", 7, math.inf), "inc-1") is True


def test_a_change_the_node_already_learned_is_not_counted() -> None:
    # "update": the node now holds the new version.
    assert judge(META, (9, digest("w")), ("w", 9, math.inf), "inc-1") is False
    # "invalidate" (or an eviction): the node holds nothing; the sample is not judged.
    assert judge(META, (9, digest("w")), None, "inc-1") is None


def test_without_versions_values_are_compared() -> None:
    # tracking: the store's check gives version 0 and the current value's digest.
    assert judge(META, (0, digest("v")), ("v", 0, math.inf), "inc-1") is False
    assert judge(META, (0, digest("w")), ("v", 0, math.inf), "inc-1") is True
    assert judge(META, (0, ""), ("v", 0, math.inf), "inc-1") is True  # deleted
    # Version 0 on either side means "compare digests", whatever the other side says.
    assert judge(META, (0, digest("v")), ("v", 7, math.inf), "inc-1") is False
    assert judge(META, (12, digest("v")), ("v", 0, math.inf), "inc-1") is False


def test_across_incarnations_values_are_compared() -> None:
    assert judge(META, (3, digest("v")), ("v", 7, math.inf), "inc-0") is False
    assert judge(META, (3, digest("w")), ("v", 7, math.inf), "inc-0") is True


def test_a_cached_absence_is_judged_by_value() -> None:
    # An absent key checks at the store's current sequence number: no sign of a change.
    assert judge(META, (100, ""), (ABSENT, 40, math.inf), "inc-1") is False
    assert judge(META, (60, digest("v")), (ABSENT, 40, math.inf), "inc-1") is True


def test_the_sampler_counts_a_batchs_verdicts() -> None:
    sampler = Sampler(1.0)
    checks: list[KeyState] = [
        (7, digest("v")),
        (9, digest("w")),
        (9, digest("w")),
        (0, digest("x")),
    ]
    held: Sequence[tuple[Any, ...] | None] = [("v", 7, 1.0), ("v", 7, 1.0), None, ("y", 0, 1.0)]
    assert sampler.judge(META, checks, held, "inc-1") == 2
    assert (sampler.verified, sampler.stale, sampler.skipped) == (3, 2, 1)
    assert sampler.estimate() == (2 / 3, *wilson(2, 3))
    with pytest.raises(ValueError, match="the store answers all"):
        sampler.judge(META, checks, held[:2], "inc-1")
    sampler.failed(5)
    assert (sampler.errors, sampler.dropped) == (1, 5)


def test_stats_carry_the_estimate_and_its_interval() -> None:
    stats = NodeStats(verified=200, verified_stale=10)
    assert stats.stale_estimate == 0.05
    assert stats.stale_interval == wilson(10, 200)
    row = stats.to_dict()
    assert row["stale_estimate"] == 0.05
    assert (row["stale_low"], row["stale_high"]) == stats.stale_interval
    assert row["verified"] == 200 and row["verify_skipped"] == 0


# -- a threaded node -------------------------------------------------------------------------


def write_unheard(client: redis.Redis, namespace: str, key: str, value: Any) -> None:
    """A write that publishes nothing (a writer that is not a node): its message is lost."""
    RedisStore(client, namespace).write("set", key, encode_value(value), None)


@pytest.mark.parametrize("strategy", ["none", "invalidate", "update"])
def test_a_hit_on_a_write_the_node_never_heard_of_is_stale(
    make_node: NodeFactory, client: redis.Redis, strategy: str
) -> None:
    # heartbeat off: its marker would reveal the gap, and repair would mend the entry
    a = make_node("a", strategy=strategy, heartbeat=None, verify=Sampler(1.0, interval=0.001))
    b = make_node("b", strategy=strategy, heartbeat=None)
    b.set("k", "old")
    b.set("j", "same")
    settle(a, b)
    assert (a.get("k"), a.get("j")) == ("old", "same")  # misses: not sampled
    write_unheard(client, "t", "k", "new")
    assert a.get("k") == "old"  # a stale hit
    assert a.get("j") == "same"  # a fresh one
    wait_for(lambda: a.stats.verified == 2, "both hits verified")
    stats = a.stats
    assert (stats.sampled, stats.verified, stats.verified_stale) == (2, 2, 1)
    assert stats.stale_estimate == 0.5
    assert verifier_threads() == ["cachelab-verify-a"]


def test_a_value_replaced_behind_cachelabs_back_is_stale(
    make_node: NodeFactory, client: redis.Redis
) -> None:
    a = make_node("a", heartbeat=None, verify=Sampler(1.0, interval=0.001))
    a.set("k", "old")
    client.hset("{t}:k:k", "val", encode_value("new"))  # no new version, no message
    assert a.get("k") == "old"
    wait_for(lambda: a.stats.verified == 1, "the hit verified")
    assert a.stats.verified_stale == 1


@pytest.mark.parametrize(("strategy", "judged"), [("invalidate", 0), ("update", 1)])
def test_a_change_heard_before_verification_is_not_stale(
    make_node: NodeFactory, strategy: str, judged: int
) -> None:
    # An hour between rounds: the thread never runs here, the test verifies by hand.
    a = make_node("a", strategy=strategy, verify=Sampler(1.0, interval=3600.0))
    b = make_node("b", strategy=strategy)
    b.set("k", "old")
    settle(a, b)
    a.get("k")
    assert a.get("k") == "old"
    b.set("k", "new")
    settle(a, b)  # a hears of it: invalidate drops the key, update replaces the value
    assert phases(a).verify_pending() == 1
    stats = a.stats
    assert (stats.verified, stats.verified_stale, stats.verify_skipped) == (judged, 0, 1 - judged)


def test_recorded_reads_and_get_or_load_are_sampled_too(client: redis.Redis) -> None:
    with Cluster(2, client=client, record=True, heartbeat=None, verify=1.0) as cluster:
        a, b = cluster.nodes
        b.set("k", "old")
        assert cluster.settle()
        a.get("k")
        write_unheard(client, cluster.namespace, "k", "new")
        assert a.get("k") == "old"
        assert a.get_or_load("k", lambda: "loaded") == "old"
        wait_for(lambda: a.stats.verified == 2, "both hits verified")
        assert a.stats.verified_stale == 2


def test_close_joins_the_verifier_thread(client: redis.Redis) -> None:
    node = CacheNode(client, name="v", namespace="t", verify=0.5)
    assert verifier_threads() == ["cachelab-verify-v"]
    node.close()
    assert verifier_threads() == []
    node.close()  # idempotent


def test_close_does_not_hang_on_a_round_trip_that_never_returns(
    make_node: NodeFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(VerifyThread, "JOIN_LIMIT", 0.01)
    a = make_node("a", strategy="none", verify=Sampler(1.0, interval=0.001))
    a.set("k", 1)
    inside, release = threading.Event(), threading.Event()

    def stuck(keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
        inside.set()
        release.wait()  # a server that stopped answering, and no socket timeout
        raise redis.ConnectionError("the server went away")

    a._store.check = stuck  # type: ignore[method-assign]
    a.get("k")
    assert inside.wait(10)
    with caplog.at_level(logging.WARNING, logger="cachelab.sampler"):
        a.close()  # returns: the thread is left to end by itself
    assert verifier_threads() == ["cachelab-verify-a"]
    assert "has not returned" in caplog.text
    release.set()
    wait_for(lambda: verifier_threads() == [], "the thread ends once the call returns")


@pytest.mark.parametrize(
    "error", [redis.ConnectionError("gone"), redis.TimeoutError("slow"), ZeroDivisionError("bug")]
)
def test_an_error_during_verification_is_counted_and_the_thread_lives_on(
    make_node: NodeFactory,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    error: Exception,
) -> None:
    a = make_node("a", strategy="none", verify=Sampler(1.0, interval=0.001))
    a.set("k", 1)
    real_check = a._store.check
    calls = []

    def failing_once(keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
        calls.append(list(keys))
        if len(calls) == 1:
            raise error
        return real_check(keys)

    a._store.check = failing_once  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="cachelab.sampler"):
        a.get("k")
        wait_for(lambda: a.stats.verify_errors == 1, "the error counted")
        a.get("k")
        wait_for(lambda: a.stats.verified == 1, "the next sample verified")
    stats = a.stats
    assert (stats.sampled, stats.verify_dropped, stats.verified_stale) == (2, 1, 0)
    assert verifier_threads() == ["cachelab-verify-a"]
    warnings = [r for r in caplog.records if r.name == "cachelab.sampler"]
    assert len(warnings) == 1 and type(error).__name__ in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # a line, not a traceback
    assert "Exception in thread" not in capfd.readouterr().err


def test_a_full_queue_drops_samples_and_the_hit_never_waits(make_node: NodeFactory) -> None:
    a = make_node("a", strategy="none", verify=Sampler(1.0, capacity=4, interval=3600.0))
    a.set("k", 1)
    for _ in range(10):
        assert a.get("k") == 1
    stats = a.stats
    assert (stats.sampled, stats.verify_dropped) == (10, 6)
    assert a.sampler is not None and a.sampler.pending == 4


@pytest.mark.parametrize("bcast", [False, True], ids=["default", "bcast"])
def test_under_tracking_a_change_the_node_never_heard_of_is_stale(
    real_client: redis.Redis, bcast: bool
) -> None:
    """No versions: the held value's SHA-1 against that of the key's value in Redis."""
    where = real_client.connection_pool.connection_kwargs
    outside = redis.Redis(host=where["host"], port=where["port"])
    a = TrackingNode(real_client, name="a", bcast=bcast, verify=Sampler(1.0, interval=0.001))
    with outside, a:
        outside.mset({"k": "old", "j": "same", "gone": "soon"})
        assert [a.get(key) for key in ("k", "j", "gone")] == [b"old", b"same", b"soon"]
        listener(a).invalidated = lambda keys: None  # deaf from now on
        outside.set("k", "new")
        outside.delete("gone")
        assert [a.get(key) for key in ("k", "j", "gone")] == [b"old", b"same", b"soon"]
        wait_for(lambda: a.stats.verified == 3, "the three hits verified")
        assert a.stats.verified_stale == 2
        assert verifier_threads() == ["cachelab-verify-a"]
    assert verifier_threads() == []


def test_over_another_store_the_owner_verifies_and_no_thread_runs() -> None:
    """A store without versions (as tracking's): its check gives version 0; values decide."""

    class Unversioned(MemoryStore):
        def check(self, keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
            meta, checks = super().check(keys)
            return meta, [(0, digest) for _, digest in checks]

    store = Unversioned(lambda: 0.0)
    with CacheNode(store, name="a", namespace="t", strategy="none", verify=1.0) as a:
        assert verifier_threads() == []
        for key in ("changed", "rewritten", "kept"):
            a.set(key, "v")
            a.get(key)
        store.write("set", "changed", encode_value("w"), None)
        store.write("set", "rewritten", encode_value("v"), None)  # same value: no sign
        assert phases(a).verify_pending() == 3
        assert (a.stats.verified, a.stats.verified_stale) == (3, 1)


# -- against the checker ---------------------------------------------------------------------

LOSSY = Network(delay=0.002, jitter=0.001, loss=0.05)
NAIVE: dict[str, Any] = {"gap_detection": False, "repair": False}  # lost stays lost


def stale_hits(history: Sequence[Any]) -> tuple[int, int]:
    """The checker's stale hits, and all hits, of a run."""
    hits = sum(1 for op in history if op.op == READ and op.hit)
    return sum(1 for op, _ in stale_reads(history) if op.hit), hits


def sampled(stats: dict[str, NodeStats]) -> tuple[int, int]:
    """Stale verdicts and verdicts, over every node."""
    return sum(s.verified_stale for s in stats.values()), sum(s.verified for s in stats.values())


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        ("invalidate", NAIVE),  # 721 of 14269 hits stale
        ("invalidate", {}),  # 387 of 14166
        ("update", {"gap_detection": False}),  # 828 of 16070
        ("none", {"ttl": 0.5}),  # 6687 of 13849
        ("tracking", {}),  # 1232 of 13535: no versions, values compared
        ("tracking", {"bcast": True}),  # 675 of 13430
    ],
)
def test_verified_at_the_hit_every_verdict_is_the_checkers(
    strategy: str, options: dict[str, Any]
) -> None:
    sim = Simulation(4, strategy, seed=7, network=LOSSY, verify=1.0, progress=False, **options)
    result = sim.run(ops=20_000)
    stale, hits = stale_hits(result.history)
    assert stale > 300
    assert sampled(result.stats) == (stale, hits)


@pytest.mark.parametrize("strategy", ["invalidate", "update", "tracking"])
@pytest.mark.parametrize("outside", ["script", "plain"])
def test_outside_writers_are_judged_as_the_checker_judges_them(strategy: str, outside: str) -> None:
    """30 % of writes from outside: cachelab's script without its message, or a plain write
    that takes no version (values compared; the run's history numbers writes by value)."""
    sim = Simulation(4, strategy, seed=7, verify=1.0, outside=outside, ttl=2.0, progress=False)
    result = sim.run(workload=zipf(20_000, 4, external=0.3, seed=1))
    stale, hits = stale_hits(result.history)
    assert stale > 100
    assert sampled(result.stats) == (stale, hits)


def agreement(seed: int, verify: float, delay: float) -> tuple[float, float, float]:
    """One lossy run: the checker's stale fraction of hits, and the sampler's interval."""
    sim = Simulation(
        4, seed=seed, network=LOSSY, verify=verify, verify_delay=delay, progress=False, **NAIVE
    )
    result = sim.run(ops=20_000)
    stale, hits = stale_hits(result.history)
    return stale / hits, *wilson(*sampled(result.stats))


@pytest.mark.parametrize("delay", [0.0, 0.005])
def test_the_samplers_estimate_agrees_with_the_checker(delay: float) -> None:
    """The issue's test: on each run, the sampler's interval holds the checker's fraction.

    A 95 % interval misses one run in twenty: ten runs, at most one miss (none today).
    """
    runs = [agreement(seed, 0.1, delay) for seed in range(10)]
    assert all(truth > 0.04 and high - low < 0.03 for truth, low, high in runs)  # informative
    assert sum(low <= truth <= high for truth, low, high in runs) >= 9


@pytest.mark.parametrize("delay", [0.005, 0.02])
def test_a_lag_before_verification_leaves_the_estimate_unbiased(delay: float) -> None:
    """Every hit sampled, judged 5 or 20 ms late: the tight interval still holds the truth
    (0.0505; the entry served, judged instead, would give 0.046 and 0.035)."""
    truth, low, high = agreement(7, 1.0, delay)
    assert high - low < 0.008
    assert low <= truth <= high


def test_simulated_verification_is_reproducible_and_is_not_repair() -> None:
    def run(**verify: Any) -> tuple[dict[str, NodeStats], dict[str, Any]]:
        result = Simulation(4, seed=3, network=LOSSY, progress=False, **verify).run(ops=5000)
        return result.stats, result.metrics()

    first, metrics = run(verify=0.2, verify_delay=0.002)
    again, _ = run(verify=0.2, verify_delay=0.002)
    assert first == again
    assert sum(s.verified for s in first.values()) > 0
    _, plain = run()
    assert metrics["repair_checks"] == plain["repair_checks"]  # nor is the run changed
    assert metrics["stale_reads"] == plain["stale_reads"]


def test_a_simulation_checks_its_verify_options() -> None:
    with pytest.raises(TypeError, match="each node gets its own Sampler"):
        Simulation(2, verify=Sampler(0.1))
    with pytest.raises(ValueError, match="verify must be"):
        Simulation(2, verify=1.5)
    with pytest.raises(ValueError, match="verify_delay"):
        Simulation(2, verify=0.1, verify_delay=-1.0)
