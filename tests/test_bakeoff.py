"""benchmarks/bakeoff.py on a small input: a row per contender, counts that add up, the
document, and the checker catching a contender that is stale by construction."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import bakeoff
from benchmarks.bakeoff import run_row
from benchmarks.bakeoff_report import Made, Row, markdown, table
from benchmarks.bakeoff_sides import CONTENDERS, Workload
from cachelab.harness.servers import ServerProcess
from tests.helpers import require_server

TINY = Workload(seconds=0.6, fault_every=0.3, quiet=0.3, after=0.1, readers=2, keys=3)
"""Two readers, three keys, 0.6 s, one fault (a kill, at 0.3 s)."""
LISTENING = ("invalidate", "redis-py", "tracking-strict")  # (each row takes seconds: four in all)


def _row(**changes: object) -> Row:
    """A made-up row, for the pure tests."""
    row = Row(
        "redis8", "cachelab invalidate", 1000, 50, 3, 0.002, 1, 990, 1.5e-7, 1e-7, 0, 1, 2, 40
    )
    return replace(row, **changes)  # type: ignore[arg-type]


# -- pure parts ---------------------------------------------------------------------------


def test_the_defaults_are_issue_17s_and_leave_a_quiet_tail() -> None:
    workload = bakeoff.workload_of(bakeoff.parser().parse_args([]))
    assert workload == Workload()
    assert (workload.readers, workload.keys, workload.rate, workload.seconds) == (4, 20, 200, 20)
    assert workload.fault_times() == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0]
    assert TINY.fault_times() == [0.3]


def test_redis_pys_cache_runs_on_redis_74_and_later_only() -> None:
    csc, ours = CONTENDERS["redis-py"], CONTENDERS["update"]
    assert csc.runs_on("redis8", "8.2.1") is None and ours.runs_on("redis", "7.0.15") is None
    assert csc.runs_on("redis", "7.0.15") is not None and csc.runs_on("valkey", "8.1.1") is not None


def test_the_kill_finds_connections_that_hear_invalidations() -> None:
    hears = bakeoff.hears_invalidations
    assert hears({"flags": "P", "redir": "-1"})  # a subscription
    assert hears({"flags": "t", "redir": "0"})  # RESP3 tracking: pushes on its own connection
    assert not hears({"flags": "t", "redir": "12"})  # tracking redirected to a subscription
    assert not hears({"flags": "N", "redir": "-1"})  # a plain data connection


def test_the_table_and_the_document_show_every_row() -> None:
    rows = [_row(), _row(contender="redis-py CacheConfig()", hits=None, stale_after=None)]
    text = table(rows, TINY)
    assert len(text.splitlines()) == 2 + len(rows)
    assert "| 3 | 0.003 | 2.000 ms | 1 | 99.00% | 0.15 µs (1.5x) | 0 |" in text
    assert "| 0.003 | 2.000 ms | n/a | n/a |" in text
    made = Made("python -m benchmarks.bakeoff", 60.0, (0.5, 1.25))
    doc = markdown(rows, {"redis8": "8.2.1"}, TINY, made)
    assert text in doc and "redis8 8.2.1" in doc and "one run" in doc
    assert "`python -m benchmarks.bakeoff`" in doc and "load average 0.50 before, 1.25 after" in doc


# -- on a real server ----------------------------------------------------------------------


@pytest.mark.real_redis
def test_every_contender_gets_a_row_and_the_checker_catches_the_stale_one(
    redis8_server: ServerProcess,
) -> None:
    names = [*LISTENING, "none"]
    rows = {name: run_row(redis8_server.url, "redis8", CONTENDERS[name], TINY) for name in names}
    for name, row in rows.items():
        assert row.contender == CONTENDERS[name].label and row.faults == 1
        assert 0 <= row.stale <= row.recorded <= row.reads and row.writes > TINY.keys
        assert row.stale_after is not None and row.stale_after <= row.stale
        assert row.hits is not None and 0 <= row.hits <= row.reads and row.hit_cost > 0
        assert row.lru_cost > 0
    for name in LISTENING:  # each reader's one connection that hears invalidations
        assert rows[name].killed == TINY.readers
    never = rows["none"]  # never invalidated: after a key's next write every read of it is old
    assert never.killed == 0 and never.stale > 0
    doc = markdown(list(rows.values()), {"redis8": "8.2"}, TINY, Made("pytest", 1.0, (0, 0)))
    assert all(f"| redis8 | {CONTENDERS[name].label} |" in doc for name in names)


@pytest.mark.real_redis
def test_main_writes_the_document_and_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_server("valkey")
    out = tmp_path / "bakeoff.md"
    bakeoff.main(["--servers", "valkey", "--contenders", "redis-py", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "skipped redis-py on valkey: redis-py's client-side cache needs Redis 7.4+" in printed
    assert "valkey 8." in out.read_text() and f"wrote {out}" in printed
