"""Propagation against OS processes on a real Redis: cachelab's invalidations, and a raw
PUBLISH measured in the same run; writes docs/scaling.md and cachelab/sim/scaling.json.

For each N (1, 2, 4, 8, 16 by default) and each kind, N subscriber processes
(``benchmarks/scaling_member.py``) listen on one private redis-server, and a writer in this
process writes W times at a fixed rate:

- ``cachelab``: each process holds a ``CacheNode(strategy="invalidate")`` of one namespace;
  the writer is a ``CacheNode(strategy="none")`` of it (it publishes every write but listens
  to none, so it is no subscriber), and its recorder gives each write's version;
- ``raw``: each process holds a plain redis-py PubSub; the writer sends one plain
  ``PUBLISH`` per write, a JSON payload padded to the size of cachelab's message.

Every time is ``time.monotonic()``, CLOCK_MONOTONIC on Linux: one clock shared by every
process of the machine, so a member's arrival minus the writer's start is a delay.

- **propagation** of a write: the latest time any process applied it (cachelab: the node's
  ``"applied"`` event; raw: the message read) minus the time the writer *started* the write
  (always positive; it includes the writer's round trip). p50 and p99 over the writes.
- **deliveries** = publishes x subscribers, where publishes are the writes' messages. The
  server's own figures cross-check it: ``PUBSUB NUMSUB`` gives the subscribers, and the
  ``cmdstat_publish`` calls of ``INFO commandstats`` (PUBLISH inside a script included) give
  every publish in the window; what exceeds the writes are the nodes' heartbeats (one a
  second per node, each delivered to that node alone), counted in ``heartbeats``, not in
  ``deliveries``. deliveries/s = deliveries / (last arrival - first write's start).
- **server CPU**: ``used_cpu_sys + used_cpu_user`` of ``INFO cpu``, just before the first write
  and once every process has every write. Before the writes, an idle window as long as the
  writes (the processes connected, nodes heartbeating) gives the idle rate; ``idle_cpu_s`` is
  that rate times the measured window, and ``cpu_ms_per_10k`` is (cpu_s - idle_cpu_s) per
  10,000 deliveries: heartbeats and the server's cron are subtracted, not counted.
- **subscriber CPU**: each process's ``time.process_time()`` just before the first write and
  once it has every write, summed over the processes, per delivery (``client_us_per_delivery``).
- **calibration**: a least-squares fit, over every row, of the net CPU on publishes,
  deliveries and cachelab's publishes (the write script's extra over a plain PUBLISH).

Everything shares two cores with the server: at 16 processes the delays are mostly waiting
for a core. ``make scaling`` runs the defaults: two runs of each N and kind, about four
minutes on two cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks.fitting import least_squares, residual_rms
from benchmarks.scaling_member import KINDS, Arrivals, Member
from cachelab import CacheNode
from cachelab.harness.servers import ServerProcess, version
from cachelab.messages import channel
from cachelab.sim.fleet_calibration import SCALING_JSON

PROCS = (1, 2, 4, 8, 16)
KEYS = [f"k{i}" for i in range(100)]
HOW = (
    "least squares of server CPU on publishes and deliveries over every row "
    "(CPU net of the idle rate; script_us is the coefficient of cachelab's publishes)"
)

Write = Callable[[int], None]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between the closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0 and 100, not {q!r}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Counters:
    """What the server says of itself at one moment: CPU seconds, publishes, bytes out."""

    at: float
    cpu: float
    publishes: int
    out_bytes: int

    @classmethod
    def read(cls, client: redis.Redis) -> Counters:
        """One INFO round trip."""
        info = client.info("all")
        publishes = int(info.get("cmdstat_publish", {}).get("calls", 0))
        cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return cls(time.monotonic(), cpu, publishes, int(info["total_net_output_bytes"]))


@dataclass(frozen=True)
class Run:
    """One N and kind: each write's start by id, each process's arrivals, the server's counts."""

    kind: str
    procs: int
    starts: dict[int, float]
    arrivals: list[Arrivals]
    before: Counters
    after: Counters
    idle_cpu_per_s: float
    subscribers: int
    client_cpu: float  # CPU seconds the subscriber processes used over the writes, together

    @property
    def cpu(self) -> float:
        """The server's CPU seconds over the measured window."""
        return self.after.cpu - self.before.cpu

    @property
    def idle_cpu(self) -> float:
        """What the server would have used idle over as long."""
        return self.idle_cpu_per_s * (self.after.at - self.before.at)

    @property
    def elapsed(self) -> float:
        """From the first write's start to the last arrival anywhere."""
        last = max(t for arrivals in self.arrivals for t in arrivals.values())
        return last - min(self.starts.values())

    @property
    def missing(self) -> int:
        """Writes that did not reach a process, counted once per process."""
        return sum(i not in arrivals for arrivals in self.arrivals for i in self.starts)

    @property
    def out_bytes(self) -> int:
        """Bytes the server sent over the window (deliveries, replies, one INFO reply)."""
        return self.after.out_bytes - self.before.out_bytes


# -- measuring ---------------------------------------------------------------------------


def measure(
    server: ServerProcess, kind: str, procs: int, writes: int, rate: float, size: int
) -> Run:
    """Start ``procs`` subscriber processes of ``kind``, write ``writes`` times at ``rate`` per
    second, wait until every process has every write, and stop them (always)."""
    client = server.client()
    token = secrets.token_hex(3)
    # The raw channel is named as long as cachelab's: every delivery carries its name.
    target = f"scale-{token}" if kind == "cachelab" else "{scale-" + token + "}:raw"
    heard_on = channel(target) if kind == "cachelab" else target
    with members(kind, procs, server.url, target) as group, ExitStack() as stack:
        subscribers = _subscribers(client, heard_on, procs)
        idle = _idle_cpu_per_s(client, writes / rate)
        write, starts = _writer(stack, client, kind, target, size)
        used = sum(member.expect(0, 0.0)[1] for member in group)
        before = Counters.read(client)
        _paced(writes, rate, write)
        used = sum(member.expect(writes)[1] for member in group) - used
        after = Counters.read(client)
        arrivals = [member.stop() for member in group]
    client.close()
    return Run(kind, procs, starts, arrivals, before, after, idle, subscribers, used)


@contextmanager
def members(kind: str, procs: int, url: str, target: str) -> Iterator[list[Member]]:
    """``procs`` subscriber processes, all ready; every one of them ended on the way out."""
    group: list[Member] = []
    try:
        for _ in range(procs):
            group.append(Member(kind, url, target))
        for member in group:
            member.ready()
        yield group
    finally:
        for member in group:
            member.end()


def _subscribers(client: redis.Redis, name: str, expected: int, timeout: float = 10.0) -> int:
    """The server's count of subscribers of ``name`` (PUBSUB NUMSUB), once it is ``expected``."""
    deadline = time.monotonic() + timeout
    while True:
        count = int(client.pubsub_numsub(name)[0][1])
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.01)


def _idle_cpu_per_s(client: redis.Redis, seconds: float) -> float:
    """The server's CPU seconds per second over ``seconds`` with nobody writing."""
    before = Counters.read(client)
    time.sleep(seconds)
    after = Counters.read(client)
    return (after.cpu - before.cpu) / (after.at - before.at)


def _writer(
    stack: ExitStack, client: redis.Redis, kind: str, target: str, size: int
) -> tuple[Write, dict[int, float]]:
    """How the writer writes number i, and where it notes each write's start by id."""
    starts: dict[int, float] = {}
    if kind == "raw":

        def publish(i: int) -> None:
            start = time.monotonic()
            client.publish(target, payload(i, size))
            starts[i] = start

        return publish, starts

    def record(node: str, op: str, key: str, start: float, end: float, *rest: Any) -> None:
        starts[int(rest[0])] = start  # the version: the id the nodes stamp

    node = stack.enter_context(
        CacheNode(client, name="writer", namespace=target, strategy="none", recorder=record)
    )
    return lambda i: node.set(KEYS[i % len(KEYS)], i), starts


def payload(i: int, size: int) -> str:
    """A raw message carrying write number i, padded to ``size`` characters."""
    bare = json.dumps({"i": i, "pad": ""})
    return json.dumps({"i": i, "pad": "x" * max(0, size - len(bare))})


def _paced(count: int, rate: float, write: Write) -> None:
    """Call ``write(i)`` for i in range(count), the i-th at i / rate seconds from now."""
    begin = time.monotonic()
    for i in range(count):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        write(i)


def message_size(server: ServerProcess) -> int:
    """The size of cachelab's invalidation, as a subscriber receives it, in a namespace named
    like the runs' (one probe write)."""
    client = server.client()
    namespace = f"scale-{secrets.token_hex(3)}"
    with client, client.pubsub() as probe:
        probe.subscribe(channel(namespace))
        probe.get_message(timeout=5.0)  # the confirmation
        with CacheNode(client, name="writer", namespace=namespace, strategy="none") as node:
            node.set(KEYS[0], 0)
        message = probe.get_message(timeout=5.0)
    if message is None:
        raise RuntimeError("the probe heard no message from the write script")
    return len(message["data"])


# -- figures -----------------------------------------------------------------------------


def row(runs: Sequence[Run]) -> dict[str, Any]:
    """The figures of one N and kind, pooled over its runs, under the names
    cachelab/sim/scaling.json keeps: the delays of every run's writes, the sums of their counts."""
    first = runs[0]
    if any((run.kind, run.procs) != (first.kind, first.procs) for run in runs):
        raise ValueError("a row pools runs of one kind and one N only")
    delays = [delay for run in runs for delay in _delays(run)]
    publishes = sum(len(run.starts) for run in runs)
    deliveries = publishes * first.procs
    cpu, idle = sum(run.cpu for run in runs), sum(run.idle_cpu for run in runs)
    client = sum(run.client_cpu for run in runs)
    return {
        "procs": first.procs,
        "kind": first.kind,
        "p50_ms": percentile(delays, 50) * 1e3,
        "p99_ms": percentile(delays, 99) * 1e3,
        "deliveries": deliveries,
        "deliveries_per_s": deliveries / sum(run.elapsed for run in runs),
        "publishes": publishes,
        "cpu_s": cpu,
        "cpu_ms_per_10k": (cpu - idle) / deliveries * 1e7,
        "idle_cpu_s": idle,
        "heartbeats": sum(run.after.publishes - run.before.publishes for run in runs) - publishes,
        "subscribers": min(run.subscribers for run in runs),
        "missing": sum(run.missing for run in runs),
        "client_cpu_s": client,
        "client_us_per_delivery": client / deliveries * 1e6,
        "out_bytes_per_delivery": sum(run.out_bytes for run in runs) / deliveries,
        "elapsed_s": sum(run.elapsed for run in runs),
        "runs": len(runs),
        "p50_each_ms": [percentile(_delays(run), 50) * 1e3 for run in runs],
        "p99_each_ms": [percentile(_delays(run), 99) * 1e3 for run in runs],
    }


def _delays(run: Run) -> list[float]:
    """Each write's propagation: its latest arrival minus its start (writes every process had)."""
    delays = [
        max(arrivals[i] for arrivals in run.arrivals) - start
        for i, start in run.starts.items()
        if all(i in arrivals for arrivals in run.arrivals)
    ]
    if not delays:
        raise RuntimeError(f"no write reached all {run.procs} {run.kind} processes")
    return delays


def calibrate(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Server CPU per publish, per delivery and per write script, fitted over every row."""
    xs = [
        [r["publishes"], r["deliveries"], r["publishes"] if r["kind"] == "cachelab" else 0]
        for r in rows
    ]
    ys = [r["cpu_s"] - r["idle_cpu_s"] for r in rows]
    coefs = least_squares(xs, ys)
    rms = residual_rms(xs, ys, coefs)
    mean = sum(ys) / len(ys)
    return {
        "publish_us": coefs[0] * 1e6,
        "delivery_us": coefs[1] * 1e6,
        "script_us": coefs[2] * 1e6,
        "how": HOW,
        "residual_rms_ms": rms * 1e3,
        "residual_share": rms / mean if mean else math.inf,
    }


def document(
    rows: list[dict[str, Any]], writes: int, rate: float, load: Sequence[float] = ()
) -> dict[str, Any]:
    """The calibration file: when, where, the rows and the calibration. ``load`` is the
    machine's 1-minute load average before and after the runs: others' work shares the cores too."""
    return {
        "measured": datetime.date.today().isoformat(),
        "server": f"redis {version('redis')}",
        "cores": os.cpu_count(),
        "load": list(load),
        "rate": rate,
        "writes": writes,
        "repeat": max((r.get("runs", 1) for r in rows), default=1),
        "rows": rows,
        "calibration": calibrate(rows),
    }


# -- the report --------------------------------------------------------------------------


def markdown(doc: dict[str, Any], seconds: float) -> str:
    """docs/scaling.md: the table, then the calibration and what the figures mean."""
    by = {(r["procs"], r["kind"]): r for r in doc["rows"]}
    procs = sorted({r["procs"] for r in doc["rows"]})
    lines = [
        "# Propagation against processes: cachelab and a raw PUBLISH",
        "",
        f"Generated by `make scaling` (`benchmarks/scaling.py`) on {doc['measured']}: a private "
        f"{doc['server']} on {doc['cores']} cores, {doc['writes']} writes at {doc['rate']:g}/s "
        f"in each run, {doc['repeat']} runs for each N and kind (the kinds alternating), "
        f"pooled; {seconds:.0f} s in all.{_load(doc)}",
        "",
        "| N | cachelab p50 / p99 ms | raw p50 / p99 ms | ratio p50 / p99 "
        "| deliveries/s cachelab / raw | CPU ms per 10k deliveries cachelab / raw "
        "| subscriber CPU µs per message cachelab / raw |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [_table_row(n, by[n, "cachelab"], by[n, "raw"]) for n in procs]
    lines += ["", *_notes(doc)]
    return "\n".join(lines) + "\n"


def _load(doc: dict[str, Any]) -> str:
    """The machine's load during the run, when it was recorded."""
    if len(doc.get("load", ())) != 2:
        return ""
    before, after = doc["load"]
    return f" Load average (1 min): {before:.1f} before, {after:.1f} after."


def _table_row(n: int, ours: dict[str, Any], raw: dict[str, Any]) -> str:
    """One N: both kinds side by side."""
    ratio = f"{ours['p50_ms'] / raw['p50_ms']:.2f} / {ours['p99_ms'] / raw['p99_ms']:.2f}"
    return (
        f"| {n} | {ours['p50_ms']:.2f} / {ours['p99_ms']:.2f} | {raw['p50_ms']:.2f} / "
        f"{raw['p99_ms']:.2f} | {ratio} | {ours['deliveries_per_s']:,.0f} / "
        f"{raw['deliveries_per_s']:,.0f} | {ours['cpu_ms_per_10k']:.1f} / "
        f"{raw['cpu_ms_per_10k']:.1f} | {ours['client_us_per_delivery']:.0f} / "
        f"{raw['client_us_per_delivery']:.0f} |"
    )


def _notes(doc: dict[str, Any]) -> list[str]:
    """The calibration and the definitions under the table."""
    fit = doc["calibration"]
    rows = doc["rows"]
    idle = max(r["idle_cpu_s"] / r["elapsed_s"] for r in rows) * 100
    return [
        f"**Calibration** (cachelab/sim/scaling.json, for the fleet model): server CPU per PUBLISH "
        f"{fit['publish_us']:.1f} µs, per delivery to one subscriber {fit['delivery_us']:.2f} µs, "
        f"and cachelab's write script {fit['script_us']:.1f} µs over a plain PUBLISH; "
        f"{fit['how']}. Residual: {fit['residual_rms_ms']:.1f} ms of CPU (rms over the rows), "
        f"{fit['residual_share']:.0%} of the mean row. At {doc['rate']:g} writes/s the server "
        "sleeps between writes, so the cost per PUBLISH includes waking its event loop.",
        "",
        "**Propagation** is the latest time any of the N processes applied a write (cachelab: "
        "its node's `applied` event; raw: the message read) minus the time the writer started "
        "it, on CLOCK_MONOTONIC, which every process of the machine shares. "
        + _deliveries_note(rows),
        "",
        "**CPU** is `used_cpu_sys + used_cpu_user` of INFO over the window, less the idle rate "
        f"measured just before it over as long (at most {idle:.1f} % of a core): that subtracts "
        "the server's cron and the nodes' heartbeats (one a second per node, each delivered to "
        "that node alone; counted apart, not as deliveries). **Subscriber CPU** is the CPU "
        "time the N processes used from the first write until they had every write, per "
        "message each received: the client's side of a delivery (redis-py's parse, and for "
        "cachelab the decode, checks and apply; heartbeats included).",
        "",
        _load_note(rows, doc["rate"]),
    ]


def _deliveries_note(rows: list[dict[str, Any]]) -> str:
    """What the server's own counts said of the deliveries, and what was missing."""
    numsub = all(r["subscribers"] == r["procs"] for r in rows)
    publishes = all(r["heartbeats"] == 0 for r in rows if r["kind"] == "raw") and all(
        r["heartbeats"] >= 0 for r in rows
    )
    beats = sum(r["heartbeats"] for r in rows if r["kind"] == "cachelab")
    missing = sum(r["missing"] for r in rows)
    return (
        "**Deliveries** are publishes x N. "
        f"PUBSUB NUMSUB {'was N in every row' if numsub else 'DIFFERED from N (see the JSON)'}; "
        "INFO commandstats (PUBLISH inside scripts included) counted "
        f"{'exactly the writes in every raw row' if publishes else 'OTHER publishes than ours'}, "
        f"and the writes plus {beats} heartbeats in the cachelab rows. "
        f"Writes that did not reach every process: {missing}."
    )


def _load_note(rows: list[dict[str, Any]], rate: float) -> str:
    """Where the machine could not keep up with the offered load."""
    behind = sorted({r["procs"] for r in rows if r["deliveries_per_s"] < 0.97 * rate * r["procs"]})
    where = (
        f"At N = {', '.join(map(str, behind))} deliveries fell behind the offered rate: "
        "the processes' backlog outlasted the writes. "
        if behind
        else "Every row delivered at the offered rate. "
    )
    return (
        where + "Everything (the server, the writer, N subscriber processes) shares the "
        "machine's cores, so at large N the delays are mostly a wait for a core, for both kinds "
        "alike. " + _spread_note(rows)
    )


def _spread_note(rows: list[dict[str, Any]]) -> str:
    """How far the runs pooled in one row disagreed on their p99 (p99_each_ms in the JSON)."""
    spreads = [(max(r["p99_each_ms"]) / min(r["p99_each_ms"]), r) for r in rows if r["runs"] > 1]
    if not spreads:
        return "Each row is one run: rerun to see how far its p99 moves."
    ratio, worst = max(spreads, key=lambda pair: pair[0])
    each = " and ".join(f"{v:.1f}" for v in worst["p99_each_ms"])
    return (
        f"The runs of a row disagree on p99 by up to {ratio:.1f}x ({worst['kind']} at "
        f"N = {worst['procs']}: {each} ms): the p50s are the figures to trust on a shared "
        "machine, the p99s show what a busy one does to the tail."
    )


# -- the command -------------------------------------------------------------------------


def _positive_ints(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` as (1, 2, 4); each a positive integer."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--procs takes integers like 1,2,4, not {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--procs must all be at least 1, not {text!r}")
    return values


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a positive number of ``kind``."""

    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
        return value

    return parse


def run_all(
    procs: Sequence[int],
    writes: int,
    rate: float,
    repeat: int = 2,
    report: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every N, both kinds, ``repeat`` times each, on one private redis-server (stopped on
    the way out); a row per N and kind, its runs pooled."""
    rows = []
    with ServerProcess("redis") as server:
        size = message_size(server)
        for n in procs:
            runs: dict[str, list[Run]] = {kind: [] for kind in KINDS}
            for kind in _alternating(repeat):
                runs[kind].append(measure(server, kind, n, writes, rate, size))
                done = row(runs[kind][-1:])
                report(f"N={n} {kind}: p50 {done['p50_ms']:.2f} ms, p99 {done['p99_ms']:.2f} ms")
            rows += [row(runs[kind]) for kind in KINDS]
    return rows


def _alternating(repeat: int) -> list[str]:
    """The kinds ``repeat`` times, the order turned each time: neither always goes first
    into whatever the machine is doing."""
    return [kind for r in range(repeat) for kind in (KINDS if r % 2 == 0 else KINDS[::-1])]


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the table, write docs/scaling.md and cachelab/sim/scaling.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=_positive_ints, default=PROCS, help="e.g. 1,2,4,8,16")
    parser.add_argument("--writes", type=_positive(int), default=2000)
    parser.add_argument("--rate", type=_positive(float), default=500.0, help="writes per second")
    parser.add_argument("--repeat", type=_positive(int), default=2, help="runs per N and kind")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where scaling.md goes")
    parser.add_argument("--calibration", type=Path, default=SCALING_JSON,
                        help="where scaling.json goes (the package's: the fleet model reads it)")
    args = parser.parse_args(argv)
    if len(set(args.procs)) < 2:
        parser.error("--procs needs two values at least: the calibration tells N apart")
    begin, load = time.monotonic(), os.getloadavg()[0]
    rows = run_all(
        args.procs,
        int(args.writes),
        args.rate,
        int(args.repeat),
        lambda line: print(line, file=sys.stderr),
    )
    doc = document(rows, int(args.writes), args.rate, (load, os.getloadavg()[0]))
    text = markdown(doc, time.monotonic() - begin)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.md").write_text(text)
    args.calibration.write_text(json.dumps(doc, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
