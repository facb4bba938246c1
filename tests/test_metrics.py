"""Metrics: a Prometheus collector and OpenTelemetry instruments over nodes' counters."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest

from cachelab import AsyncCacheNode, CacheNode, TrackingNode
from cachelab.bus import Heartbeat
from cachelab.metrics.otel import instrument
from cachelab.metrics.prometheus import NodeCollector
from cachelab.stats import LagStats
from tests.helpers import NodeFactory, phases, settle, wait_for


def beats(node: CacheNode, count: int) -> LagStats:
    """Wait until ``count`` heartbeats of ``node`` came back."""
    wait_for(lambda: (node.propagation_lag or LagStats()).count >= count, f"{count} beats")
    lag = node.propagation_lag
    assert lag is not None
    return lag


def known_operations(a: CacheNode, b: CacheNode) -> None:
    """b: 2 misses, 2 hits, 1 stale fill rejected, 3 invalidations (a's writes), 1 entry."""
    a.set("k", 1)
    settle(a, b)  # b hears of it first (else the message could arrive after b's load)
    assert b.get("k") == 1 and b.get("k") == 1  # a miss, then a hit
    ticket = phases(b).load("slow")  # a slow read of "slow"...
    a.set("slow", 2)  # ...overtaken by a write
    settle(a, b)
    phases(b).fill(ticket)  # refused by the fill guard
    a.set("k", 3)  # b drops its copy of k
    settle(a, b)
    assert b.get("slow") == 2  # a miss, then b holds "slow"
    assert b.get("slow") == 2  # a hit


def test_prometheus_series_after_known_operations(make_node: NodeFactory) -> None:
    a, b = make_node("a"), make_node("b")
    known_operations(a, b)
    registry = CollectorRegistry()
    collector = NodeCollector([a, b]).register(registry)
    assert collector.nodes == (a, b)

    def value(name: str, node: str = "b") -> float | None:
        return registry.get_sample_value(name, {"node": node, "namespace": "t"})

    assert value("cachelab_hits_total") == 2
    assert value("cachelab_misses_total") == 2  # the phased load is no get()
    assert value("cachelab_stale_fills_rejected_total") == 1
    assert value("cachelab_invalidations_received_total") == 3  # a's three writes
    assert value("cachelab_entries") == 1
    assert value("cachelab_gaps_total") == 0
    assert value("cachelab_repair_checks_total") == 0
    assert value("cachelab_hits_total", "a") == 0
    assert value("cachelab_verified_total") is None  # no verify=: no staleness series
    text = generate_latest(registry).decode()
    assert "# TYPE cachelab_hits_total counter" in text
    assert 'cachelab_hits_total{namespace="t",node="b"} 2.0' in text
    assert "# TYPE cachelab_entries gauge" in text
    assert "# TYPE cachelab_propagation_lag_seconds summary" in text


def test_prometheus_propagation_lag_is_the_heartbeat_round_trip(make_node: NodeFactory) -> None:
    a = make_node("a", heartbeat=0.02)
    quiet = make_node("q", strategy="none")  # no subscription, no heartbeat, no lag
    assert quiet.propagation_lag is None
    lag = beats(a, 3)
    assert lag.last is not None and lag.max is not None
    assert 0 < lag.last <= lag.max < 1.0 and lag.total >= lag.max
    registry = CollectorRegistry()
    NodeCollector([a, quiet]).register(registry)
    labels = {"node": "a", "namespace": "t"}
    count = registry.get_sample_value("cachelab_propagation_lag_seconds_count", labels)
    total = registry.get_sample_value("cachelab_propagation_lag_seconds_sum", labels)
    last = registry.get_sample_value("cachelab_propagation_lag_last_seconds", labels)
    longest = registry.get_sample_value("cachelab_propagation_lag_max_seconds", labels)
    assert count is not None and count >= 3 and total is not None and total > 0
    assert last is not None and longest is not None and 0 < last <= longest < 1.0
    quiet_labels = {"node": "q", "namespace": "t"}
    assert registry.get_sample_value("cachelab_propagation_lag_seconds_count", quiet_labels) is None
    assert registry.get_sample_value("cachelab_hits_total", quiet_labels) == 0


def test_the_heartbeat_measures_send_to_echo() -> None:
    now = [10.0]
    beat = Heartbeat(1.0, timer=lambda: now[0])
    beat.restart()
    now[0] = 11.0
    token = beat.due()
    assert token is not None
    now[0] = 11.25
    assert not beat.answer("not the token")
    assert beat.answer(token)
    now[0] = 12.5
    second = beat.due()
    assert second is not None
    now[0] = 12.6
    assert beat.echo(b'{"op":"beat","key":"' + second.encode() + b'"}')
    lag = beat.lag.snapshot()
    assert lag.count == 2 and lag.recent == pytest.approx((0.25, 0.1))
    assert lag.total == pytest.approx(0.35) and lag.max == pytest.approx(0.25)
    assert lag.last == pytest.approx(0.1)
    assert LagStats().last is None and LagStats().max is None


def test_sampled_staleness_is_exported_where_the_node_samples() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with CacheNode(client, name="v", namespace="t", verify=1.0) as node:
        node.set("k", 1)
        for _ in range(5):
            node.get("k")
        wait_for(lambda: node.stats.verified >= 5, "five verified hits")
        registry = CollectorRegistry()
        NodeCollector(node).register(registry)  # one node on its own is fine too
        labels = {"node": "v", "namespace": "t"}
        verified = registry.get_sample_value("cachelab_verified_total", labels)
        assert verified is not None and verified >= 5
        assert registry.get_sample_value("cachelab_verified_stale_total", labels) == 0
        assert registry.get_sample_value("cachelab_stale_estimate", labels) == 0
        assert registry.get_sample_value("cachelab_stale_estimate_low", labels) == 0
        high = registry.get_sample_value("cachelab_stale_estimate_high", labels)
        assert high is not None and 0 < high < 0.5


def test_a_collector_refuses_what_it_cannot_label(make_node: NodeFactory) -> None:
    a = make_node("a")
    with pytest.raises(ValueError, match="two nodes named 'a'"):
        NodeCollector([a, a])
    with pytest.raises(TypeError, match="expected cachelab nodes"):
        NodeCollector([object()])


def otel_points(reader: InMemoryMetricReader) -> dict[tuple[str, str], Any]:
    """``(metric name, node) -> value`` of the reader's latest collection."""
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, str], Any] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes = point.attributes or {}
                    assert attributes["namespace"] == "t"
                    points[metric.name, str(attributes["node"])] = point.value  # type: ignore[union-attr]
    return points


def test_opentelemetry_instruments_after_known_operations(make_node: NodeFactory) -> None:
    a, b = make_node("a", heartbeat=0.02), make_node("b", heartbeat=0.02)
    known_operations(a, b)
    beats(a, 2)
    beats(b, 2)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        made = instrument(provider.get_meter("cachelab-test"), [a, b])
        assert len(made) == 12 + 2 + 4  # counters, gauges, lag; no verify=: no staleness
        points = otel_points(reader)
    finally:
        provider.shutdown()
    assert points["cachelab.hits", "b"] == 2
    assert points["cachelab.misses", "b"] == 2
    assert points["cachelab.stale_fills_rejected", "b"] == 1
    assert points["cachelab.invalidations_received", "b"] == 3
    assert points["cachelab.entries", "b"] == 1
    assert points["cachelab.gaps", "a"] == 0
    assert points["cachelab.propagation_lag.count", "a"] >= 2
    assert 0 < points["cachelab.propagation_lag.last", "b"] < 1.0
    assert (
        points["cachelab.propagation_lag.max", "b"] >= points["cachelab.propagation_lag.last", "b"]
    )
    assert points["cachelab.propagation_lag.sum", "a"] > 0
    assert ("cachelab.verified", "a") not in points


def test_opentelemetry_staleness_with_verify() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    with CacheNode(client, name="v", namespace="t", verify=1.0) as node:
        node.set("k", 1)
        node.get("k")
        wait_for(lambda: node.stats.verified >= 1, "a verified hit")
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        try:
            instrument(provider.get_meter("cachelab-test"), node)
            points = otel_points(reader)
        finally:
            provider.shutdown()
    assert points["cachelab.verified", "v"] >= 1
    assert points["cachelab.verified_stale", "v"] == 0
    assert points["cachelab.stale_estimate", "v"] == 0
    assert 0 < points["cachelab.stale_estimate.high", "v"] <= 1


def test_a_tracking_node_times_its_ping(real_client: redis.Redis) -> None:
    with TrackingNode(real_client, name="tr", namespace="t", heartbeat=0.02) as tr:
        lag = beats(tr, 2)  # a PING's round trip on the redirect connection
        assert lag.last is not None and 0 < lag.last < 1.0
        registry = CollectorRegistry()
        NodeCollector([tr]).register(registry)
        labels = {"node": "tr", "namespace": "t"}
        count = registry.get_sample_value("cachelab_propagation_lag_seconds_count", labels)
        assert count is not None and count >= 2


def test_an_async_node_exports_the_same_series() -> None:
    async def scenario() -> CollectorRegistry:
        r = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        async with AsyncCacheNode(r, name="x", namespace="m", heartbeat=0.01) as node:
            await node.set("k", 1)
            assert await node.get("k") == 1 and node.peek("k") == 1
            for _ in range(500):  # the heartbeat's first round trip (bounded, no timing claim)
                lag = node.propagation_lag
                if lag is not None and lag.count:
                    break
                await asyncio.sleep(0.005)
            registry = CollectorRegistry()
            NodeCollector([node]).register(registry)
            generate_latest(registry)  # a scrape runs while the node is live
        await r.aclose()
        return registry

    registry = asyncio.run(scenario())
    labels = {"node": "x", "namespace": "m"}
    assert registry.get_sample_value("cachelab_hits_total", labels) == 2
    count = registry.get_sample_value("cachelab_propagation_lag_seconds_count", labels)
    assert count is not None and count >= 1
