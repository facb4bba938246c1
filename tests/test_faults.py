"""The fault matrix's logic, on single cells of both real servers (``make faults`` runs all)."""

from __future__ import annotations

from functools import partial

import pytest
import redis

from benchmarks.faults import FAULTS, NOTHING, Result, run_cell
from benchmarks.faults_cost import Baseline, Spent, Tally, Work, shown
from benchmarks.faults_report import markdown
from cachelab.harness.servers import Kind, ServerProcess
from tests.helpers import REAL_PARAMS, require_server

BY_NAME = {fault.name: fault for fault in FAULTS}


@pytest.mark.parametrize("kind", REAL_PARAMS)
@pytest.mark.parametrize(
    ("fault", "strategy"),
    [
        ("kill-pubsub", "invalidate"),
        ("restart-rdb", "update"),
        ("forged", "update"),
        ("kill-pubsub", "tracking"),
        ("flushall", "tracking"),
        ("outside-write", "tracking"),
        ("kill-pubsub", "stream"),
        ("forged", "stream"),
        ("outsider-entry", "stream"),
        ("swapdb", "tracking"),
        ("swapdb", "invalidate"),
        ("rollback", "update"),
        ("replayed", "invalidate"),
        ("replayed", "stream"),
    ],
)
def test_a_cell_leaves_nothing_stale_after_settle(kind: Kind, fault: str, strategy: str) -> None:
    require_server(kind)
    result = run_cell(kind, strategy, BY_NAME[fault], seconds=0.6, fault_at=0.2)
    assert result.stale_after == 0
    assert result.reads > 0 and 0.0 <= result.hit_after <= 1.0
    assert result.recovery < float("inf")
    if fault == "forged":
        assert result.notes["messages_forged"] > 0
    if (fault, strategy) == ("kill-pubsub", "stream"):  # every reader came back by replay
        assert result.notes["replays"] >= 3 and result.notes["repair_checks"] == 0


def test_the_table_names_every_fault_and_flags_a_broken_promise() -> None:
    notes = {"repair_checks": 2, "replays": 0}
    good = Result("redis", "invalidate", "flushall", 3, 100, 0, 0.02, 0.5, 0, notes)
    bad = Result("valkey", "update", "sigstop", 0, 100, 2, 0.3, 0.9, 1)
    by_design = Result("redis", "none", "restart", 9, 100, 4, 0.1, 0.2, 0)
    text = markdown([good, bad, by_design], {"redis": "7.0.15", "valkey": "8.1.8"}, {})
    row = "| redis | flushall | invalidate | 3 of 100 | **0** |  | 20 ms | 50% | 2 / 0 |  | 0 |"
    assert row in text
    assert all(f"**{fault.name}**" in text for fault in FAULTS)
    assert "## Cells that broke the promise" in text and "valkey / sigstop / update: 2" in text
    assert "restart / none" not in text  # strategy none is stale by design, and says why


@pytest.mark.parametrize("kind", REAL_PARAMS)
@pytest.mark.parametrize("strategy", ["invalidate", "update"])
def test_an_outside_write_is_stale_until_the_ttl_and_no_longer(kind: Kind, strategy: str) -> None:
    require_server(kind)
    result = run_cell(kind, strategy, BY_NAME["outside-write"], seconds=0.6, fault_at=0.2)
    assert result.stale_after > 0  # by design: nobody told them
    assert result.stale_after_ttl == 0  # the bound: the TTL


# -- the cost column ----------------------------------------------------------------------

# Background 10 commands and 100 µs a second; 2.0, 2.1 and 2.2 commands and 5 µs an operation.
BASELINE = Baseline(
    Spent(Work(10, 100.0), 0, 1.0),
    tuple(Spent(Work(10 + per_op * 100, 600.0), 100, 1.0) for per_op in (2.0, 2.1, 2.2)),
)


def test_a_cost_is_the_work_beyond_the_baseline_at_the_cells_length_and_operations() -> None:
    a_cell = Spent(Work(300, 600.0), 100, 1.0)
    assert BASELINE.extra(a_cell, "commands") == pytest.approx((300 - 10 - 210, 20))
    assert BASELINE.extra(a_cell, "usec") == pytest.approx((0, 0))
    stalled = Spent(Work(200, 450.0), 50, 2.0)  # twice the background, half the rest
    assert BASELINE.extra(stalled, "commands") == pytest.approx((200 - 20 - 105, 10))


def test_a_cost_within_twice_the_baseline_runs_spread_prints_as_about_zero() -> None:
    spread = 20.0  # 0.2 commands an operation between the runs, at 100 operations
    assert shown(30, spread) == "~0" and shown(-40, spread) == "~0" and shown(0, 0) == "~0"
    assert shown(41, spread) == "+41" and shown(-1234, spread) == "-1,234"


def test_the_table_has_a_cost_column_and_the_baselines_it_subtracts() -> None:
    spent = Spent(Work(300, 900.0), 100, 1.0)
    cell = Result("redis", "update", "flushall", 0, 60, 0, 0.01, 1.0, 0, {}, None, spent)
    text = markdown([cell], {"redis": "7.0.15"}, {("redis", "update"): BASELINE})
    assert "| checks / replays | cost: commands / µs | errors |" in text
    assert "| 0 / 0 | +80 / +300 | 0 |" in text  # 300 µs beyond 600, and no spread in µs
    assert "## The baselines" in text
    assert "| redis | update | 2 to 2.2 | 5 to 5 | 10 / 100 |" in text
    assert "**~0**" in text  # the rule, in the header


def test_the_admin_tally_names_commands_as_commandstats_does(real_client: redis.Redis) -> None:
    admin = Tally(connection_pool=real_client.connection_pool)
    admin.client_list()
    admin.config_set("maxmemory", "0")
    pipe = admin.pipeline(transaction=False)
    pipe.set("k", "v")
    pipe.execute()
    with admin.pubsub() as listener:
        listener.subscribe("a channel")
    stats = real_client.info("commandstats")
    assert set(admin.sent) == {"client|list", "config|set", "set", "subscribe"}
    assert all(f"cmdstat_{name}" in stats for name in admin.sent)


def _spent(result: Result) -> Spent:
    assert result.spent is not None
    return result.spent


@pytest.mark.parametrize("fault", ["flushall", "kill-pubsub"])
def test_a_fault_that_forces_repairs_costs_more_commands_than_no_fault(
    spare_server: ServerProcess, fault: str
) -> None:
    cell = partial(run_cell, spare_server.kind, "update", seconds=0.6, fault_at=0.2)
    idle = _spent(cell(NOTHING, idle=True, server=spare_server))
    nothing, *runs, forced = (
        _spent(cell(f, server=spare_server)) for f in (NOTHING, NOTHING, NOTHING, BY_NAME[fault])
    )
    baseline = Baseline(idle, tuple(runs))
    assert baseline.extra(forced, "commands")[0] > baseline.extra(nothing, "commands")[0]
