"""``cachelab run``: node processes on a private redis-server, merged histories, the report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cachelab.check import check
from cachelab.harness import cli, runner, servers
from cachelab.harness.servers import ServerProcess
from cachelab.history import Op
from tests.helpers import require_cluster

ROOT = Path(__file__).resolve().parent.parent


def children() -> set[int]:
    """The pids of this process's live children (from /proc: Linux only)."""
    return children_of(os.getpid())


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """``cachelab run ... --json --quiet`` in this process; its parsed output (exit 0)."""
    before = children()
    assert cli.main(["run", *args, "--json", "--quiet"]) == 0
    assert children() <= before, "a node process outlived the run"
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


@pytest.mark.real_redis
def test_two_processes_merge_into_one_checked_history(
    redis_server: ServerProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "history.jsonl"
    args = ["--procs", "2", "--threads", "2", "--ops", "2000", "--url", redis_server.url]
    out = run_json(capsys, *args, "--history", str(path), "--clock-offset", "0.002")
    report, run, nodes = out["report"], out["run"], out["nodes"]
    assert (run["ops"], run["errors"], report["reads"] + report["writes"]) == (2000, 0, 2000)
    assert set(nodes) == {"a", "b"} and report["nodes"] == 2
    pids = {node["pid"] for node in nodes.values()}
    assert len(pids) == 2 and os.getpid() not in pids  # two processes of their own
    history = [Op(*json.loads(line)) for line in path.read_text().splitlines()]
    assert len(history) == 2000 and {op.node for op in history} == {"a", "b"}
    ends = [op.end for op in history]
    assert ends == sorted(ends)  # merged on one clock
    assert check(history, offset=0.002).stale_reads == report["stale_reads"]
    assert run["clock_offset"] == 0.002 and run["settled"] is True
    assert run["stale_after_settle"] == 0 and run["after_reads"] == 2 * 100


@pytest.mark.real_redis
def test_faults_are_injected_and_nothing_stale_survives_settle(
    redis_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--procs", "2", "--threads", "2", "--ops", "3000", "--url", redis_server.url]
    out = run_json(capsys, *args, "--faults", "kill-pubsub,pause", "--keys", "20")
    run, nodes = out["run"], out["nodes"]
    assert run["faults"]["kill-pubsub"] >= 1 and run["faults"]["pause"] >= 1
    for node in nodes.values():  # every subscription was killed: each node came back
        assert node["stats"]["reconnects"] >= 1 and node["coherent"] is True
    # invalidate promises nothing during the blip, but 0 stale entries once settled
    assert run["settled"] is True and run["stale_after_settle"] == 0
    assert out["report"]["reads"] + out["report"]["writes"] == 3000 - run["errors"]


@pytest.mark.real_redis
def test_strict_nodes_read_nothing_stale_while_their_subscriptions_are_killed(
    redis_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same run without --strict read 17 to 83 stale values in three runs here.
    args = ["--procs", "2", "--threads", "2", "--ops", "3000", "--url", redis_server.url]
    faults = ["--faults", "kill-pubsub", "--fault-every", "0.1", "--keys", "10"]
    out = run_json(capsys, *args, *faults, "--strict")
    run, nodes = out["run"], out["nodes"]
    assert run["strict"] is True and run["faults"]["kill-pubsub"] >= 1
    assert all(node["stats"]["disconnects"] >= 1 for node in nodes.values())
    assert out["report"]["stale_reads"] == 0 and run["stale_after_settle"] == 0


def test_one_process_without_a_url_runs_on_the_embedded_fakeredis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_json(capsys, "--procs", "1", "--ops", "500", "--threads", "3")
    assert out["run"]["server"].startswith("the embedded fakeredis")
    assert out["report"]["reads"] + out["report"]["writes"] == 500
    assert out["nodes"]["a"]["pid"] == os.getpid()
    assert out["report"]["nines"] is None or out["report"]["nines"] > 0  # strict JSON: no inf


def test_the_text_report_names_the_checker_and_the_nodes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["run", "--procs", "1", "--ops", "200", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("consistency report: ")
    assert "run: 200 ops in" in text and "node a (pid" in text and "stale after settle: 0" in text


def test_several_processes_without_a_server_say_what_they_need(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(servers, "binary", lambda kind: None)
    assert cli.main(["run", "--procs", "2", "--ops", "10", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "need a shared Redis server" in err
    assert "--url" in err and "redis-server" in err


@pytest.mark.real_redis
@pytest.mark.parametrize("fault", ["sigstop", "flushall"])
def test_a_fault_on_the_server_itself_needs_a_private_server(
    redis_server: ServerProcess, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    redis_server.client().set("theirs", 1)
    args = ["run", "--url", redis_server.url, "--faults", fault, "--quiet"]
    assert cli.main(args) == 2
    assert f"{fault} needs a private server" in capsys.readouterr().err
    assert redis_server.client().get("theirs") == b"1"  # nothing of theirs was touched


@pytest.mark.real_redis
def test_after_flushall_the_merged_history_finds_nothing_stale_after_settle(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each process numbered the new incarnation in its own order; merged, they agree."""
    args = ["--procs", "3", "--threads", "2", "--ops", "3000", "--keys", "20"]
    out = run_json(capsys, *args, "--faults", "flushall", "--fault-every", "0.2")
    run, nodes = out["run"], out["nodes"]
    assert run["faults"]["flushall"] >= 1 and run["settled"] is True
    assert all(node["stats"]["resets"] >= 1 and node["coherent"] for node in nodes.values())
    assert run["stale_after_settle"] == 0 and run["after_reads"] == 3 * 20


def test_sigstop_is_refused_on_a_cluster_before_one_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cluster(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cluster was started for a run that is refused")

    monkeypatch.setattr(runner, "ClusterProcess", no_cluster)
    assert cli.main(["run", "--cluster", "--faults", "sigstop", "--quiet"]) == 2
    assert "sigstop needs a private server: drop --cluster" in capsys.readouterr().err


def children_of(pid: int) -> set[int]:
    """The pids of ``pid``'s live children (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if ppid == str(pid) and state != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.mark.real_redis
def test_sigterm_ends_the_run_and_every_node_process(redis_server: ServerProcess) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-m", "cachelab", "run", "--procs", "2", "--ops", "50000000",
         "--url", redis_server.url, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(nodes := children_of(runner.pid)) < 2:  # both nodes up (and working)
            assert time.monotonic() < deadline and runner.poll() is None, "no nodes started"
            time.sleep(0.05)
        time.sleep(0.3)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 130
        assert runner.stderr is not None
        err = runner.stderr.read().decode()
        assert "interrupted" in err and "Traceback" not in err
        assert not any(Path(f"/proc/{pid}").exists() for pid in nodes)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        if runner.stderr is not None:
            runner.stderr.close()


@pytest.mark.real_redis
def test_a_run_on_a_private_redis_cluster_merges_striped_histories(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_cluster("redis")
    args = ["--cluster", "--stripes", "4", "--procs", "2", "--threads", "2", "--ops", "2000"]
    out = run_json(capsys, *args, "--faults", "kill-pubsub", "--keys", "20")
    report, run, nodes = out["report"], out["run"], out["nodes"]
    assert "private Redis Cluster" in run["server"] and run["faults"]["kill-pubsub"] >= 1
    for node in nodes.values():  # the pub/sub connections on every master were killed
        assert node["stats"]["reconnects"] >= 1 and node["coherent"] is True
    # a striped namespace has an incarnation per stripe; versions still merge across processes
    assert report["read_your_writes_violations"] == 0
    assert run["settled"] is True and run["stale_after_settle"] == 0
