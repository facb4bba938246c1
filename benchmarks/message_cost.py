"""What one message or event costs the server: an ``INFO commandstats`` delta per event.

Three nodes hold ``entries`` warm entries each (4 KiB values) on a private server, with no
workload and no heartbeat, so every command in the window is the event's or the settle's.
Each event is measured against a control: the same settle with no event before it.

- **forged**: a well-formed message whose number the store never issued (no secret);
- **replayed**: a captured genuine message, authenticated, published again unchanged;
- **rollback**: an older dump restored in place (``SAVE``, writes, ``DEBUG RELOAD``), then
  one write;
- **reset**: the namespace's counter lost (``DEL {ns}:meta``, as an evicting policy may),
  then one write;
- **outsider-entry** (strategy ``stream``): an entry at the last possible id, then a write;
- **swapdb** (strategy ``tracking``): ``SWAPDB 0 1``, noticed by the database identity.

The replayed and forged rows are what anyone who can PUBLISH can make a node do; the
others are real losses, whose repairs grow with the cache by necessity.
``make message-cost`` writes docs/message-cost.md; the tests run it small.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from cachelab import Cluster, messages
from cachelab.harness.servers import KINDS, Kind, ServerProcess, binary, version

SECRET = b"the fleet's secret, for the replayed message"
LAST_ID = "18446744073709551615-18446744073709551615"


@dataclass(frozen=True)
class Cost:
    """One event's cost beyond the control's, on one server."""

    kind: str
    event: str
    entries: int
    scripts: int  # EVAL and EVALSHA calls
    commands: int  # every command
    cpu_ms: float  # the server's time in commands
    suspected: int  # entries the nodes distrusted, in all


@dataclass(frozen=True)
class Scene:
    """What an event acts on: the nodes, an admin client, and a genuine message heard."""

    cluster: Cluster
    admin: redis.Redis
    heard: bytes  # the first write's message on the channel (b"" on a stream or tracking)


@dataclass(frozen=True)
class Event:
    """How to set one event up and inject it."""

    name: str
    strategy: str
    what: str
    inject: Callable[[Scene], None]
    secret: bool = False
    prepare: Callable[[Scene], None] | None = None  # outside the window


def _forged(scene: Scene) -> None:
    namespace = scene.cluster.namespace
    inc, seq = scene.admin.hmget("{" + namespace + "}:meta", "inc", "seq")  # as anyone can
    assert isinstance(inc, bytes) and isinstance(seq, bytes)
    msg = messages.Message(namespace, "set", "k0", "intruder#1", int(seq) + 10**6, 1, inc.decode())
    scene.admin.publish(messages.channel(namespace), messages.encode(msg))


def _replayed(scene: Scene) -> None:
    scene.admin.publish(messages.channel(scene.cluster.namespace), scene.heard)


def _dump_then_write(scene: Scene) -> None:
    """Before the window: a dump, then 20 writes it will not have, settled."""
    scene.admin.save()
    for i in range(20):
        scene.cluster.nodes[0].set(f"k{i}", "after the dump")
    assert scene.cluster.settle(timeout=20)


def _rollback(scene: Scene) -> None:
    scene.admin.execute_command("DEBUG", "RELOAD", "NOSAVE")  # type: ignore[no-untyped-call]
    scene.cluster.nodes[0].set("k0", "after the reload")


def _reset(scene: Scene) -> None:
    scene.admin.delete("{" + scene.cluster.namespace + "}:meta")
    scene.cluster.nodes[0].set("k0", "after the reset")


def _outsider_entry(scene: Scene) -> None:
    scene.admin.xadd("{" + scene.cluster.namespace + "}:stream", {"m": "x"}, id=LAST_ID)
    scene.cluster.nodes[0].set("k0", "after the outsider")


def _swapdb(scene: Scene) -> None:
    scene.admin.swapdb(0, 1)


EVENTS = [
    Event(
        "forged", "update", "a well-formed message with a number the store never issued, "
        "no secret", _forged,
    ),
    Event(
        "replayed", "invalidate", "a captured authenticated message published again "
        "unchanged (`secret=`)", _replayed, secret=True,
    ),
    Event(
        "rollback", "invalidate", "`DEBUG RELOAD` of a dump older than 20 writes (its own "
        "server time included), then one write", _rollback, prepare=_dump_then_write,
    ),
    Event("reset", "invalidate", "`DEL {ns}:meta` (the counter lost), then one write", _reset),
    Event(
        "outsider-entry", "stream", "an entry at the last possible id, then one write "
        "(the stream is started again, and the gap repaired)", _outsider_entry,
    ),
    Event(
        "swapdb", "tracking", "`SWAPDB 0 1` under tracking nodes (each flushes: no server "
        "work beyond the identity reads a settle makes anyway)", _swapdb,
    ),
]  # fmt: skip


def measure(kind: Kind, event: Event, entries: int) -> Cost:
    """Run ``event`` on a fresh server of ``kind``; its cost beyond a plain settle."""
    with ServerProcess(kind) as server, server.client() as admin:
        listener = admin.pubsub()
        options: dict[str, Any] = {"secret": SECRET} if event.secret else {}
        with Cluster(3, url=server.url, strategy=event.strategy, heartbeat=None, **options) as c:
            listener.subscribe(messages.channel(c.namespace))
            _warm(c, admin, event.strategy, entries)
            scene = Scene(c, admin, _first_message(listener))
            if event.prepare is not None:
                event.prepare(scene)
            control = _window(admin, lambda: None, c)
            before = sum(n.stats.suspected for n in c.nodes)
            cost = _window(admin, lambda: event.inject(scene), c)
            suspected = sum(n.stats.suspected for n in c.nodes) - before
        listener.close()
    return Cost(
        kind,
        event.name,
        entries,
        cost[0] - control[0],
        cost[1] - control[1],
        round(max(0.0, cost[2] - control[2]), 3),
        suspected,
    )


def _warm(cluster: Cluster, admin: redis.Redis, strategy: str, entries: int) -> None:
    """Every node holds every key."""
    value = "x" * 4096
    for i in range(entries):
        if strategy == "tracking":
            admin.set(f"k{i}", value)
        else:
            cluster.nodes[0].set(f"k{i}", value)
    for node in cluster.nodes:
        for i in range(entries):
            node.get(f"k{i}")
    assert cluster.settle(timeout=30), "the nodes did not settle"


def _first_message(listener: redis.client.PubSub) -> bytes:
    """The first message the raw listener heard (a genuine write's, on pub/sub)."""
    for _ in range(1000):
        message = listener.get_message(timeout=0.01)
        if message is not None and message["type"] == "message":
            return bytes(message["data"])
    return b""  # a stream or tracking namespace publishes nothing on the channel


def _window(
    admin: redis.Redis, act: Callable[[], None], cluster: Cluster
) -> tuple[int, int, float]:
    """``act``, then a settle: the script calls, commands and server ms in between."""
    before = server_work(admin)
    act()
    assert cluster.settle(timeout=30), "the nodes did not settle"
    after = server_work(admin)
    return after[0] - before[0], after[1] - before[1], after[2] - before[2]


def server_work(admin: redis.Redis) -> tuple[int, int, float]:
    """Script calls, every call, and the ms spent in commands, so far."""
    stats = admin.info("commandstats")
    scripts = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("eval", "evalsha"))
    calls = sum(int(s["calls"]) for s in stats.values())
    usec = sum(int(s["usec"]) for s in stats.values())
    return scripts, calls, usec / 1000


def markdown(costs: list[Cost], kinds: Mapping[Kind, str]) -> str:
    """docs/message-cost.md: one row per event and server."""
    servers = ", ".join(f"{kind} {ver}" for kind, ver in kinds.items())
    entries = costs[0].entries if costs else 0
    lines = [
        "# What one message or event costs",
        "",
        f"Generated by `make message-cost` (`benchmarks/message_cost.py`); servers: {servers}. "
        f"Three nodes each hold {entries} entries of 4 KiB; no workload, no heartbeat. Each "
        "figure is the `INFO commandstats` delta of the event and the settle after it, less "
        "that of a settle alone. The bound for a message anyone can publish is in "
        "docs/protocol.md (What one message may cost).",
        "",
        "| server | event | script calls | commands | server ms | entries distrusted |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.kind} | {c.event} | {c.scripts} | {c.commands} | {c.cpu_ms:.2f} | {c.suspected} |"
        for c in costs
    ]
    lines += ["", "## The events", ""]
    lines += [f"- **{e.name}** (strategy `{e.strategy}`): {e.what}." for e in EVENTS]
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> None:
    """Measure every event on every server found; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("docs/message-cost.md"))
    args = parser.parse_args(argv)
    kinds = {kind: version(kind) or "?" for kind in KINDS if binary(kind)}
    costs = [measure(kind, event, args.entries) for kind in kinds for event in EVENTS]
    text = markdown(costs, kinds)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
