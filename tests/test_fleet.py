"""The fleet model: messages per write, shard load, batching, saturation, calibration."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import redis

from cachelab.sim.fleet import Fleet
from cachelab.sim.fleet_calibration import FALLBACK, Calibration, default, measure
from cachelab.sim.fleet_interest import binomial, hit_rate
from cachelab.sim.fleet_keys import Popularity, shard_of_keys, shard_shares, stripe_slot
from cachelab.sim.fleet_load import Batch, Batcher, Shard, weighted_percentile
from cachelab.sim.fleet_saturation import cost_per_write, saturation
from cachelab.sim.network import Network

CAL = Calibration(publish_us=10.0, delivery_us=1.0, script_us=20.0)


def fleet(nodes: int = 100, **options: Any) -> Fleet:
    """A fleet with the test calibration and a fixed seed unless told otherwise."""
    options.setdefault("calibration", CAL)
    options.setdefault("seed", 1)
    return Fleet(nodes, **options)


# -- the modes ---------------------------------------------------------------------


def test_same_seed_same_result_and_another_seed_differs() -> None:
    one = fleet(mode="tracking", read_rate=20.0).run(5.0)
    assert one == fleet(mode="tracking", read_rate=20.0).run(5.0)
    assert one != fleet(mode="tracking", read_rate=20.0, seed=2).run(5.0)


def test_broadcast_sends_one_message_per_node_per_write() -> None:
    result = fleet(1000, write_rate=200.0).run(5.0)
    assert result.writes > 800 and result.deliveries == 1000 * result.writes
    assert result.messages_per_write == 1000 and result.publishes == result.writes


def test_broadcast_utilisation_is_rate_times_cost() -> None:
    result = fleet(1000, write_rate=200.0).run(5.0)
    assert result.busiest == pytest.approx(200.0 * (10 + 20 + 1000 * 1.0) * 1e-6)


def test_tracking_tells_the_nodes_that_read_the_key_since_its_last_write() -> None:
    # One key: gaps between writes are Exp(w), so E[told] = nodes * r / (r + w) exactly.
    result = fleet(1000, keys=1, mode="tracking", read_rate=10.0, write_rate=40.0).run(50.0)
    assert result.messages_per_write == pytest.approx(1000 * 10 / 50, rel=0.05)


def test_tracking_messages_stay_under_the_fleet_and_grow_with_the_read_rate() -> None:
    per_write = [fleet(1000, mode="tracking", read_rate=r).run(5.0).messages_per_write
                 for r in (1.0, 10.0, 100.0)]
    assert 0 < per_write[0] < per_write[1] < per_write[2] <= 1000


def test_cache_size_changes_the_hit_rate_not_whom_tracking_tells() -> None:
    small = fleet(1000, mode="tracking", read_rate=50.0, cache_size=10).run(5.0)
    large = fleet(1000, mode="tracking", read_rate=50.0, cache_size=5000).run(5.0)
    assert small.deliveries == large.deliveries  # the server cannot hear of local evictions
    assert small.hit_rate < large.hit_rate
    assert small.server_reads_per_s > large.server_reads_per_s


def test_striping_over_k_shards_divides_the_busiest_load_by_about_k() -> None:
    one = fleet(1000, zipf=0.0, write_rate=100.0).run(20.0).busiest
    for placement in ("round_robin", "slots"):
        striped = fleet(1000, zipf=0.0, write_rate=100.0, mode="striped", stripes=256,
                        shards=4, placement=placement).run(20.0)
        assert striped.messages_per_write == 1000
        assert striped.busiest / one == pytest.approx(1 / 4, rel=0.2), placement
        assert sum(striped.utilisation) == pytest.approx(one, rel=0.01)


def test_a_hot_key_keeps_its_shard_busier_than_the_rest() -> None:
    hot = fleet(1000, zipf=1.2, mode="striped", stripes=16, shards=4, placement="round_robin")
    shares = hot.shard_shares()
    assert sum(shares) == pytest.approx(1.0)
    assert max(shares) > 1.3 / 4  # key k0 alone takes over a fifth of the writes


# -- batching ----------------------------------------------------------------------


def test_batches_of_100_cut_publishes_a_hundredfold_under_a_high_write_rate() -> None:
    plain = fleet(10, write_rate=20_000.0, samples=1).run(1.0)
    batched = fleet(10, write_rate=20_000.0, batch=(100, 10.0), samples=1).run(1.0)
    # Each of the 10 writers fills a batch every 50 ms; at most one partial batch each is left.
    assert batched.writes / 100 <= batched.publishes <= batched.writes / 100 + 10
    assert plain.publishes / batched.publishes == pytest.approx(100, rel=0.03)


def test_batching_adds_staleness_bounded_by_its_window() -> None:
    network = Network(delay=0.001, jitter=0.0)
    plain = fleet(100, write_rate=50.0, network=network).run(10.0)
    batched = fleet(100, write_rate=50.0, network=network, batch=(100, 0.5), seed=1).run(10.0)
    assert batched.batch_wait_p99 <= 0.5 + 1e-9
    assert plain.staleness_p99 < 0.01 < batched.staleness_p50
    assert batched.staleness_p99 <= 0.5 + plain.staleness_p99 + 0.001
    assert batched.publishes < plain.publishes


def test_a_shared_batcher_fills_where_per_writer_ones_wait_for_the_timer() -> None:
    per_writer = fleet(1000, write_rate=100.0, batch=(100, 1.0)).run(10.0)
    shared = fleet(1000, write_rate=100.0, batch=(100, 1.0, "shard")).run(10.0)
    assert shared.publishes < per_writer.publishes / 10
    assert shared.batch_wait_p99 < per_writer.batch_wait_p99


def test_batcher_sends_when_full_or_on_its_timer() -> None:
    batcher = Batcher(Batch(size=3, seconds=1.0))
    assert batcher.add(0.0, (0, 0)) is None and batcher.add(0.2, (0, 0)) is None
    assert batcher.add(0.4, (0, 0)) == [0.0, 0.2, 0.4]
    assert batcher.add(0.5, (0, 0)) is None
    assert list(batcher.due(1.4)) == []  # the first batch's timer finds it sent
    assert list(batcher.due(1.5)) == [(1.5, (0, 0), [0.5])]


# -- the server queue and saturation -------------------------------------------------


def test_a_shard_serves_jobs_first_in_first_out() -> None:
    shard = Shard()
    assert shard.serve(0.0, 1.0) == 0.0
    assert shard.serve(0.5, 1.0) == 1.0  # waited half a second behind the first
    assert shard.serve(3.0, 1.0) == 3.0
    assert shard.waits == [0.0, 0.5, 0.0] and shard.work == 3.0


def test_an_overloaded_shard_is_reported_saturated_and_the_run_stops() -> None:
    limit = 1 / cost_per_write(CAL, "broadcast", 1000)
    under = fleet(1000, write_rate=0.8 * limit).run(10.0)
    over = fleet(1000, write_rate=3 * limit).run(10.0)
    assert not under.saturated and under.seconds == 10.0
    assert over.saturated and over.seconds < 10.0 and over.busiest > 1


def test_bisection_agrees_with_the_analytic_saturation() -> None:
    for nodes in (10, 1000, 10_000):
        found = saturation("broadcast", nodes, calibration=CAL, writes=500)
        assert found.write_rate == pytest.approx(1 / cost_per_write(CAL, "broadcast", nodes),
                                                 rel=0.01)


def test_bisection_under_tracking_meets_rate_times_cost_equals_one() -> None:
    found = saturation("tracking", 10_000, calibration=CAL, read_rate=100.0, writes=2000)
    cost = cost_per_write(CAL, "tracking", found.messages_per_write)
    assert found.write_rate * cost == pytest.approx(1.0, rel=0.02)


def test_striping_raises_the_saturation_point_about_k_fold() -> None:
    one = saturation("broadcast", 1000, calibration=CAL, zipf=0.0, writes=2000)
    four = saturation("striped", 1000, calibration=CAL, zipf=0.0, stripes=256, shards=4,
                      placement="round_robin", writes=2000)
    assert four.write_rate / one.write_rate == pytest.approx(4, rel=0.2)


def test_fleets_of_1000_and_10000_nodes_run() -> None:
    for nodes in (1000, 10_000):
        for mode in ("broadcast", "tracking"):
            result = Fleet(nodes, mode=mode, write_rate=50.0, calibration=CAL).run(10.0)
            assert result.writes > 400 and not math.isnan(result.staleness_p99)


# -- inputs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"nodes": 0}, "nodes"),
        ({"nodes": 2.5}, "nodes"),
        ({"mode": "gossip"}, "mode"),
        ({"write_rate": -1.0}, "write_rate"),
        ({"write_rate": 0.0}, "write_rate"),
        ({"read_rate": -1.0}, "read_rate"),
        ({"read_rate": math.nan}, "read_rate"),
        ({"keys": 0}, "keys"),
        ({"zipf": -0.5}, "zipf"),
        ({"cache_size": -1}, "cache_size"),
        ({"shards": 3}, "striped"),
        ({"mode": "striped", "shards": 0}, "shards"),
        ({"mode": "striped", "placement": "random"}, "placement"),
        ({"mode": "tracking", "batch": (100, 10.0)}, "tracking"),
        ({"batch": (0, 10.0)}, "batch size"),
        ({"batch": (100, -1.0)}, "batch seconds"),
        ({"batch": (100, 1.0, "node")}, "batch per"),
        ({"batch": 100}, "batch"),
    ],
)
def test_bad_input_raises_value_error_naming_it(options: dict[str, Any], named: str) -> None:
    nodes = options.pop("nodes", 10)
    with pytest.raises(ValueError, match=named):
        Fleet(nodes, calibration=CAL, **options)


def test_bad_run_length_and_calibration_raise() -> None:
    with pytest.raises(ValueError, match="seconds"):
        fleet().run(0.0)
    with pytest.raises(ValueError, match="delivery_us"):
        Calibration(publish_us=1.0, delivery_us=-1.0)


# -- the pieces ----------------------------------------------------------------------


def test_stripes_land_on_the_slots_redis_cluster_gives_their_tags() -> None:
    # CLUSTER KEYSLOT {cachelab#0}, {cachelab#1}, {cachelab#2} and {cachelab#15}
    assert [stripe_slot(s) for s in (0, 1, 2, 15)] == [15809, 11744, 7555, 8881]


def test_every_key_has_one_shard_and_shares_follow_popularity() -> None:
    homes = shard_of_keys(1000, 16, 3, "slots")
    assert set(homes) <= {0, 1, 2} and len(homes) == 1000
    assert sum(shard_shares(Popularity(1000, 0.0), homes, 3)) == pytest.approx(1.0)


def test_binomial_draws_have_the_binomial_mean() -> None:
    rng = random.Random(3)
    for n, p in ((1000, 0.001), (1000, 0.02), (10_000, 0.3), (100, 0.97)):
        mean = sum(binomial(rng, n, p) for _ in range(2000)) / 2000
        assert mean == pytest.approx(n * p, rel=0.05, abs=0.1)
        assert all(0 <= binomial(rng, n, p) <= n for _ in range(100))


def test_hit_rate_of_a_cache_that_holds_everything_is_reads_over_reads_and_writes() -> None:
    share = Popularity(100, 0.99).share
    assert hit_rate(share, 10.0, 40.0, capacity=1000) == pytest.approx(10 / 50)
    assert hit_rate(share, 10.0, 40.0, capacity=0) == 0.0
    assert hit_rate(share, 10.0, 0.0, 10) < hit_rate(share, 10.0, 0.0, 50) < 1.0


def test_weighted_percentile_weighs_samples() -> None:
    assert weighted_percentile([(1.0, 1.0), (2.0, 3.0)], 0.5) == 2.0
    assert weighted_percentile([(1.0, 3.0), (2.0, 1.0)], 0.5) == 1.0
    assert math.isnan(weighted_percentile([], 0.5))


# -- calibration ---------------------------------------------------------------------


def scaling_json(path: Path, **calibration: Any) -> Path:
    """A scaling.json in the benchmark's schema."""
    figures = {"publish_us": 3.0, "delivery_us": 0.5, "script_us": 12.0, "how": "a test"}
    figures.update(calibration)
    path.write_text(json.dumps({"measured": "2026-01-02", "server": "redis 7.0.15", "cores": 2,
                                "rate": 500, "writes": 2000, "rows": [],
                                "calibration": figures}))
    return path


def test_calibration_loads_scaling_json_with_its_provenance(tmp_path: Path) -> None:
    cal = Calibration.load(scaling_json(tmp_path / "scaling.json"))
    assert (cal.publish_us, cal.delivery_us, cal.script_us) == (3.0, 0.5, 12.0)
    assert cal.invalidation_us == 0.5  # no tracking figure: as a pub/sub delivery
    assert cal.measured == "2026-01-02" and "scaling.json" in cal.source and "a test" in cal.source
    assert "2026-01-02" in cal.describe()
    assert default(tmp_path / "scaling.json") == cal
    assert default(tmp_path / "absent.json") is FALLBACK


def test_calibration_refuses_a_file_without_its_figures(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"measured": "x"}))
    with pytest.raises(ValueError, match="calibration"):
        Calibration.load(tmp_path / "a.json")
    with pytest.raises(ValueError, match="delivery_us"):
        Calibration.load(scaling_json(tmp_path / "b.json", delivery_us=-1.0))


def test_live_calibration_measures_a_real_server_and_leaves_no_keys(
    real_client: redis.Redis,
) -> None:
    keys_before = real_client.dbsize()
    cal = measure(real_client, publishes=200, subscribers=4)
    # Only the bare PUBLISH is sure to show: the other figures are differences, and a busy
    # two-core machine can swallow them (then they come out 0, never negative).
    assert cal.publish_us > 0 and cal.delivery_us >= 0 and cal.script_us >= 0
    assert cal.publish_us + cal.script_us + 4 * cal.delivery_us < 10_000  # not 10 ms a write
    assert cal.source.startswith("live") and real_client.dbsize() == keys_before


def test_live_calibration_refuses_bad_counts(real_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="publishes"):
        measure(real_client, publishes=0)
    with pytest.raises(ValueError, match="subscribers"):
        measure(real_client, subscribers=0)
    with pytest.raises(ValueError, match="rounds"):
        measure(real_client, rounds=-1)
