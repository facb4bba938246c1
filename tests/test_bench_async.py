"""benchmarks/async_costs.py on small inputs: it times hits, and only hits."""

from __future__ import annotations

import asyncio

import fakeredis

from benchmarks.async_costs import hit_costs


def test_hit_costs_time_hits_of_both_reads_against_their_baselines() -> None:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    costs = asyncio.run(hit_costs(client, keys=20, number=3, rounds=2))
    names = {"await node.get", "await async LRUCache.get", "node.peek", "LRUCache.get"}
    assert set(costs) == names | {"hits"}
    assert all(costs[name] > 0 for name in names)
    assert costs["hits"] == 20 * 3 * 2 * 2  # every get and every peek a hit: no load at all
