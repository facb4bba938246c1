"""benchmarks/strategies.py on small inputs: its measurements mean what they say."""

from __future__ import annotations

import pytest
import redis

from benchmarks.strategies import _node, hit_costs, messages_per_write, staleness, write_costs


def test_hit_costs_cover_each_strategy_and_the_baseline(real_client: redis.Redis) -> None:
    costs = hit_costs(real_client, ("invalidate", "invalidate-x16", "tracking"), keys=20)
    assert set(costs) == {"invalidate", "invalidate-x16", "tracking", "cachetools"}
    assert all(cost > 0 for cost in costs.values())


def test_strict_variants_are_strict_nodes_and_write_costs_have_a_baseline(
    real_client: redis.Redis,
) -> None:
    for name in ("invalidate-strict", "tracking-strict"):
        with _node(real_client, name) as node:
            assert getattr(node, "_gate", None) is not None
    costs = hit_costs(real_client, ("invalidate-strict", "tracking-strict"), keys=20)
    assert set(costs) == {"invalidate-strict", "tracking-strict", "cachetools"}
    writes = write_costs(real_client, ("update", "update-strict"), keys=5)
    assert set(writes) == {"update", "update-strict", "SET"}
    assert all(cost > 0 for cost in writes.values())


@pytest.mark.parametrize(
    ("strategy", "writer"),
    [("tracking", "plain"), ("tracking", "node"), ("invalidate", "node"), ("stream", "node"),
     ("invalidate", "script"), ("invalidate", "plain")],
)
def test_staleness_judges_every_read_against_the_writes(
    real_client: redis.Redis, strategy: str, writer: str
) -> None:
    report = staleness(
        real_client, strategy, writer=writer, nodes=2, seconds=0.3, write_rate=100, keys=4
    )
    assert report.reads > 0
    assert report.writes > 4  # the initial values, then the writer's
    assert report.hits > 0


def test_a_script_writer_cannot_write_for_tracking(real_client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="no script"):
        staleness(real_client, "tracking", writer="script", seconds=0.1)


def test_bcast_tells_every_node_of_every_write(real_client: redis.Redis) -> None:
    bcast = messages_per_write(real_client, 3, bcast=True, rounds=2, reads=10, writes=5)
    default = messages_per_write(real_client, 3, bcast=False, rounds=2, reads=10, writes=5)
    assert bcast == 3.0
    assert 0 < default <= 3.0
