"""benchmarks/scaling.py on small inputs: its rows mean what they say, its fit is right."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from benchmarks.fitting import least_squares, residual_rms, solve
from benchmarks.scaling import (
    Run,
    _alternating,
    _positive_ints,
    _spread_note,
    calibrate,
    document,
    main,
    markdown,
    measure,
    members,
    message_size,
    payload,
    percentile,
    row,
)
from benchmarks.scaling_member import KINDS
from cachelab.harness.servers import ServerProcess

SCHEMA = {
    "procs": int,
    "kind": str,
    "p50_ms": float,
    "p99_ms": float,
    "deliveries": int,
    "deliveries_per_s": float,
    "publishes": int,
    "cpu_s": float,
    "cpu_ms_per_10k": float,
}
WRITES = 50


# -- pure parts --------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # sorts first
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_what_it_cannot_answer(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_least_squares_solves_an_exact_system() -> None:
    assert solve([[2.0, 1.0], [1.0, 3.0]], [5.0, 10.0]) == pytest.approx([1.0, 3.0])
    xs = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    coefs = least_squares(xs, [1.0, 1.0, 3.0])  # no exact fit: (4/3, 4/3)
    assert coefs == pytest.approx([4 / 3, 4 / 3])
    assert residual_rms(xs, [1.0, 1.0, 3.0], coefs) == pytest.approx(1 / 3)


def test_least_squares_names_collinear_variables() -> None:
    with pytest.raises(ValueError, match="collinear"):
        least_squares([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="rows"):
        least_squares([[1.0]], [1.0, 2.0])


def _synthetic_rows(publish: float, delivery: float, script: float) -> list[dict[str, Any]]:
    """Rows as a run would give them, their CPU made of known coefficients (seconds)."""
    rows = []
    for procs in (1, 2, 4, 8, 16):
        for kind in KINDS:
            publishes = 2000
            deliveries = publishes * procs
            net = publish * publishes + delivery * deliveries
            net += script * publishes if kind == "cachelab" else 0.0
            idle = 0.003 * procs
            rows.append(
                {
                    "procs": procs,
                    "kind": kind,
                    "publishes": publishes,
                    "deliveries": deliveries,
                    "cpu_s": net + idle,
                    "idle_cpu_s": idle,
                }
            )
    return rows


def test_calibration_recovers_known_coefficients() -> None:
    fit = calibrate(_synthetic_rows(publish=12e-6, delivery=1.5e-6, script=30e-6))
    assert fit["publish_us"] == pytest.approx(12.0)
    assert fit["delivery_us"] == pytest.approx(1.5)
    assert fit["script_us"] == pytest.approx(30.0)
    assert fit["residual_rms_ms"] == pytest.approx(0.0, abs=1e-9)


def test_calibration_reports_what_it_cannot_explain() -> None:
    rows = _synthetic_rows(publish=12e-6, delivery=1.5e-6, script=30e-6)
    rows[0]["cpu_s"] += 0.010  # one noisy row
    fit = calibrate(rows)
    assert fit["residual_rms_ms"] > 0.5
    assert 0 < fit["residual_share"] < 1


def test_a_raw_payload_has_the_size_asked_and_its_number() -> None:
    for i in (0, 7, 12345):
        text = payload(i, 120)
        assert len(text) == 120
        assert json.loads(text)["i"] == i


def test_one_n_cannot_be_calibrated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--procs", "4,4"])
    assert "--procs needs two values" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0,1", "a", "1,,2"])
def test_procs_must_be_positive_integers(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--procs"):
        _positive_ints(text)


# -- on a real server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(redis_server: ServerProcess) -> list[Run]:
    """N = 1 and 2, both kinds, 50 writes at 1000/s: measured once for the module."""
    size = message_size(redis_server)
    return [
        measure(redis_server, kind, procs, WRITES, 1000.0, size)
        for procs in (1, 2)
        for kind in KINDS
    ]


@pytest.mark.real_redis
def test_every_write_reached_every_process(runs: list[Run]) -> None:
    for run in runs:
        assert len(run.arrivals) == run.procs
        assert len(run.starts) == WRITES
        for arrivals in run.arrivals:
            assert set(arrivals) == set(run.starts), (run.kind, run.procs)
        assert row([run])["missing"] == 0


@pytest.mark.real_redis
def test_rows_have_the_schema_and_count_deliveries(runs: list[Run]) -> None:
    for run in runs:
        figures = row([run])
        for name, kind in SCHEMA.items():
            assert isinstance(figures[name], kind), (name, figures[name])
        assert figures["publishes"] == WRITES
        assert figures["deliveries"] == WRITES * run.procs
        assert figures["subscribers"] == run.procs  # the server's PUBSUB NUMSUB agrees
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert figures["cpu_s"] > 0
        assert figures["client_cpu_s"] > 0  # the subscribers' own work, measured in each


@pytest.mark.real_redis
def test_the_server_counted_every_publish(runs: list[Run]) -> None:
    # Raw writers publish nothing else; cachelab windows add only heartbeats (one a second
    # per node, and these windows are a twentieth of a second).
    for run in runs:
        heartbeats = row([run])["heartbeats"]
        assert heartbeats == 0 if run.kind == "raw" else 0 <= heartbeats <= 2 * run.procs


@pytest.mark.real_redis
def test_propagation_is_measured_from_each_writes_start(runs: list[Run]) -> None:
    for run in runs:
        for i, start in run.starts.items():
            assert all(arrivals[i] > start for arrivals in run.arrivals)


@pytest.mark.real_redis
def test_the_documents_hold_every_row_and_a_fit(runs: list[Run]) -> None:
    doc = json.loads(json.dumps(document([row([run]) for run in runs], WRITES, 1000.0, (0.5, 1.5))))
    assert doc["server"].startswith("redis ")
    assert {(r["procs"], r["kind"]) for r in doc["rows"]} == {
        (1, "cachelab"),
        (1, "raw"),
        (2, "cachelab"),
        (2, "raw"),
    }
    assert set(doc["calibration"]) >= {"publish_us", "delivery_us", "script_us", "how"}
    text = markdown(doc, 1.0)
    assert "| 1 |" in text and "| 2 |" in text
    assert "PUBSUB NUMSUB was N in every row" in text
    assert "exactly the writes in every raw row" in text
    assert "Writes that did not reach every process: 0." in text
    assert "Load average (1 min): 0.5 before, 1.5 after." in text


@pytest.mark.real_redis
def test_a_row_pools_runs_of_one_kind_and_n(runs: list[Run]) -> None:
    pooled = row([runs[0], runs[0]])
    assert pooled["runs"] == 2
    assert pooled["publishes"] == 2 * WRITES
    assert pooled["deliveries"] == 2 * WRITES * runs[0].procs
    assert pooled["cpu_s"] == pytest.approx(2 * row([runs[0]])["cpu_s"])
    with pytest.raises(ValueError, match="one kind and one N"):
        row([runs[0], runs[1]])


def test_the_notes_name_the_row_whose_runs_disagree_most() -> None:
    rows = [
        {"runs": 2, "p99_each_ms": [1.0, 3.0], "kind": "raw", "procs": 4},
        {"runs": 2, "p99_each_ms": [2.0, 2.5], "kind": "cachelab", "procs": 1},
    ]
    assert "up to 3.0x (raw at N = 4: 1.0 and 3.0 ms)" in _spread_note(rows)


def test_repeated_runs_alternate_which_kind_goes_first() -> None:
    assert _alternating(3) == ["cachelab", "raw", "raw", "cachelab", "cachelab", "raw"]


@pytest.mark.real_redis
def test_member_processes_end_even_when_the_run_fails(redis_server: ServerProcess) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        members("raw", 2, redis_server.url, "{scale-test}:raw") as group,
    ):
        procs = [member.proc for member in group]
        raise RuntimeError("boom")
    assert all(proc.poll() is not None for proc in procs)
