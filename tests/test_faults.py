"""The fault matrix's logic, on single cells of both real servers (``make faults`` runs all)."""

from __future__ import annotations

import pytest

from benchmarks.faults import FAULTS, Result, markdown, run_cell
from cachelab.harness.servers import Kind
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
    text = markdown([good, bad, by_design], {"redis": "7.0.15", "valkey": "8.1.8"})
    row = "| redis | flushall | invalidate | 3 of 100 | **0** |  | 20 ms | 50% | 2 / 0 | 0 |"
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
