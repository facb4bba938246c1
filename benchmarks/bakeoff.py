"""Stale reads side by side (issue #17): cachelab's strategies against redis-py's own
client-side cache, on one workload with faults; writes docs/bakeoff.md.

Each row is a separate run of the same workload on a private server: ``readers`` reader
processes read keys ``k0 .. k{keys-1}`` (uniform, or Zipf with ``--skew``) back to back
for ``seconds``, as fast as they can, while one writer process writes ``rate`` times a
second, each write a strictly increasing version number (its value). A fault comes every
``fault_every`` seconds, none in the last ``quiet`` seconds, in turn:

- **kill**: ``CLIENT KILL ID`` of every reader connection that receives invalidations:
  the pub/sub ones (cachelab's subscriptions, a TrackingNode's redirect target) and the
  ones tracking keys for themselves (redis-py's cache, whose RESP3 connection carries
  both its reads and the server's invalidations: that one connection is killed);
- **pause**: ``CLIENT PAUSE 200 ALL``.

The checker is cachelab's (``cachelab.check.stale_reads``): every process records its ops
with ``time.monotonic()``, CLOCK_MONOTONIC on Linux, one clock for every process of the
machine, and the histories are merged as ``cachelab run`` merges them. A read is stale
when a write of its key that ended before the read started has a newer version than the
value it returned. A reader records in full only the reads that returned a version older
than the newest its key's writer had *started* by the read's end (the writer posts it in
shared memory before each write): every other read is fresh by construction, since a
write that ended before the read started had started before it ended, so these are only
counted. That keeps tens of millions of hits out of the checker and changes no verdict.

``make bakeoff`` runs the defaults (minutes); ``python -m benchmarks.bakeoff --help``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import inspect
import json
import math
import os
import platform
import random
import secrets
import signal
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import redis
from redis.cache import CacheConfig

from cachelab import CacheNode
from cachelab.check import percentile, stale_reads
from cachelab.harness.servers import KINDS, Kind, ServerProcess, binary, version
from cachelab.history import READ, WRITE, Op, merge
from cachelab.sim.workloads import zipf_picker

PAUSE_MS = 200
"""How long the pause fault stalls every client (``CLIENT PAUSE <ms> ALL``)."""
ERRORS = (redis.RedisError, OSError)
READY_TIMEOUT = 60.0
"""Seconds a child may take to start, connect and say it is ready."""
CSC_MIN = (7, 4)
"""redis-py's client-side cache needs Redis 7.4 or later (and no Valkey: it checks)."""
SPAWN = get_context("spawn")  # a fresh interpreter: no forked locks or threads of the parent



# -- what runs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """The run every contender gets; the defaults are issue #17's."""

    seconds: float = 20.0
    fault_every: float = 2.0
    quiet: float = 4.0  # no fault in the run's last seconds, so that "after" has reads
    after: float = 2.0  # "stale after": reads starting this long after the last fault healed
    readers: int = 4
    keys: int = 20
    rate: float = 200.0
    skew: float = 0.0
    seed: int = 1

    def fault_times(self) -> list[float]:
        """Seconds from the start of each fault: every ``fault_every``, none in ``quiet``."""
        count = math.floor((self.seconds - self.quiet) / self.fault_every + 1e-9)
        return [self.fault_every * (i + 1) for i in range(max(0, count))]

    @property
    def names(self) -> list[str]:
        """The keys, as the checker names them."""
        return [f"k{i}" for i in range(self.keys)]


@dataclass(frozen=True)
class Contender:
    """One row's cache: a cachelab strategy (strict or not), or redis-py's (``strategy`` None)."""

    name: str
    strategy: str | None
    strict: bool = False
    ttl: float | None = None

    @property
    def label(self) -> str:
        """How the table names it."""
        if self.strategy is None:
            return "redis-py CacheConfig()"
        ttl = f", ttl {self.ttl:g} s" if self.ttl is not None else ""
        return f"cachelab {self.strategy}{' strict' if self.strict else ''}{ttl}"

    def runs_on(self, kind: Kind, server_version: str) -> str | None:
        """None if it can run on this server, else why not."""
        if self.strategy is not None:
            return None
        numbers = tuple(int(part) for part in server_version.split(".")[:2])
        if kind == "valkey" or numbers < CSC_MIN:
            return f"redis-py's client-side cache needs Redis 7.4+, not {kind} {server_version}"
        return None


CONTENDERS = {
    c.name: c
    for c in (
        Contender("invalidate", "invalidate"),
        Contender("invalidate-strict", "invalidate", strict=True),
        Contender("update", "update"),
        Contender("update-strict", "update", strict=True),
        Contender("tracking", "tracking"),
        Contender("tracking-strict", "tracking", strict=True),
        Contender("redis-py", None),
        # Never invalidated, kept an hour: stale by construction (the checker's control).
        Contender("none", "none", ttl=3600.0),
    )
}
DEFAULT_CONTENDERS = tuple(name for name in CONTENDERS if name != "none")


def strict_supported() -> bool:
    """Whether this cachelab's CacheNode takes ``strict=`` (TrackingNode passes it on)."""
    return "strict" in inspect.signature(CacheNode).parameters


def choose(names: Sequence[str], say: Callable[[str], None] = print) -> list[Contender]:
    """The contenders named, less the strict ones when cachelab has no ``strict=`` (said)."""
    chosen = [CONTENDERS[name] for name in names]
    if strict_supported():
        return chosen
    for contender in chosen:
        if contender.strict:
            say(f"skipped {contender.name}: this cachelab's CacheNode takes no strict= yet")
    return [c for c in chosen if not c.strict]


# -- a child process: one reader or the writer --------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What one child is: its role and number, the row's server and tag, and the run."""

    role: str  # "reader" or "writer"
    index: int
    url: str
    tag: str  # the row's namespace, key prefix and client-name stem
    contender: str
    workload: Workload

    @property
    def name(self) -> str:
        """Its client and node name: the faults find a reader's connections by it."""
        return f"{self.tag}-{'r' if self.role == 'reader' else 'w'}{self.index}"

    def to_json(self) -> str:
        """As the child receives it."""
        return json.dumps({**asdict(self), "workload": asdict(self.workload)})

    @classmethod
    def from_json(cls, text: str) -> Spec:
        """Back from ``to_json``."""
        fields = json.loads(text)
        return cls(**{**fields, "workload": Workload(**fields["workload"])})


@dataclass
class Side:
    """A child's cache or client: how it reads and writes a key, what it counts and closes."""

    keys: list[str]  # the names ``read`` and ``write`` take, by key number
    read: Callable[[str], Any]
    write: Callable[[str, int], Any]
    hits: Callable[[], int | None]  # local hits so far, if the cache counts them
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Close what it opened, last first, each even if another failed."""
        with ExitStack() as stack:
            for close in self.closers:
                stack.callback(close)


def build_side(spec: Spec) -> Side:
    """The child's cache (a reader) or client (the writer) for the row's contender."""
    contender = CONTENDERS[spec.contender]
    if contender.strategy is not None:  # a cachelab row: its writer is a node like its readers
        return _cachelab_node(spec, contender)
    return _redis_py_cache(spec) if spec.role == "reader" else _plain_writer(spec)


def _redis_py_cache(spec: Spec) -> Side:
    """redis-py's client-side cache, as its documentation enables it."""
    client = redis.Redis.from_url(
        spec.url, protocol=3, cache_config=CacheConfig(), client_name=spec.name
    )
    keys = [f"{spec.tag}:{name}" for name in spec.workload.names]
    return Side(keys, client.get, client.set, lambda: None, [client.close])


def _plain_writer(spec: Spec) -> Side:
    """A plain client that SETs the keys redis-py's cache reads."""
    client = redis.Redis.from_url(spec.url, client_name=spec.name)
    keys = [f"{spec.tag}:{name}" for name in spec.workload.names]
    return Side(keys, client.get, client.set, lambda: None, [client.close])


def _cachelab_node(spec: Spec, contender: Contender) -> Side:
    """A cachelab node of the row's namespace, built as ``cachelab.stripes.make_node`` would."""
    from cachelab.stripes import node_class  # TrackingNode needs a real server: on demand

    assert contender.strategy is not None
    client = redis.Redis.from_url(spec.url, client_name=spec.name)
    options: dict[str, Any] = {"ttl": contender.ttl}
    if contender.strategy == "tracking":
        options["prefix"] = f"{spec.tag}:"
    if contender.strict:
        options["strict"] = True
    node = node_class(contender.strategy)(
        client, name=spec.name, namespace=spec.tag, strategy=contender.strategy, **options
    )
    closers = [client.close, node.close]  # the node first: its threads use the client
    return Side(spec.workload.names, node.get, node.set, lambda: node.stats.hits, closers)


@dataclass
class Recorded:
    """One process's ops in columns: key number, start, end, version (and what it counted)."""

    keys: array[int] = field(default_factory=lambda: array("H"))
    starts: array[float] = field(default_factory=lambda: array("d"))
    ends: array[float] = field(default_factory=lambda: array("d"))
    versions: array[int] = field(default_factory=lambda: array("q"))
    count: int = 0  # every op done, recorded or not
    errors: int = 0
    last_error: str = ""

    def add(self, key: int, start: float, end: float, version: int) -> None:
        """Record one op."""
        self.keys.append(key)
        self.starts.append(start)
        self.ends.append(end)
        self.versions.append(version)

    def columns(self) -> tuple[array[int], array[float], array[float], array[int]]:
        """The four columns, in the order they travel."""
        return self.keys, self.starts, self.ends, self.versions

    def ops(self, node: str, kind: str, names: Sequence[str]) -> list[Op]:
        """The recorded ops as the checker takes them."""
        return [
            Op(node, kind, names[k], start, end, v)
            for k, start, end, v in zip(*self.columns(), strict=True)
        ]


def read_loop(side: Side, latest: Any, pick: Callable[[], int], until: float) -> Recorded:
    """Read back to back until ``until``; record reads older than the writer's newest."""
    out, read, keys, now = Recorded(), side.read, side.keys, time.monotonic
    count = 0
    while True:
        k = pick()
        start = now()
        if start >= until:
            break
        try:
            value = read(keys[k])
        except ERRORS as exc:
            out.errors, out.last_error = out.errors + 1, f"{type(exc).__name__}: {exc}"
            continue
        end, count = now(), count + 1
        version = 0 if value is None else int(value)
        if version < latest[k]:  # maybe stale (see the module's notes): the checker judges
            out.add(k, start, end, version)
    out.count = count
    return out


def write_loop(side: Side, latest: Any, rng: random.Random, first: int, span: tuple[float, float],
               rate: float) -> Recorded:  # fmt: skip
    """Write versions ``first``, ``first + 1``, ... at ``rate`` a second within ``span``."""
    out, version, (due, until) = Recorded(), first, span
    while (due := _paced(due, rate)) < until:
        version += 1
        _write(side, latest, rng.randrange(len(side.keys)), version, out)
    return out


def _paced(due: float, rate: float) -> float:
    """Sleep until ``due``; the next write's time (no burst to catch up after a stall)."""
    now = time.monotonic()
    if due > now:
        time.sleep(due - now)
        return due + 1 / rate
    return max(due + 1 / rate, now)


def _write(side: Side, latest: Any, key: int, version: int, out: Recorded) -> None:
    """One write, recorded; its version is posted first, for the readers' filter."""
    latest[key] = version
    start = time.monotonic()
    try:
        side.write(side.keys[key], version)
    except ERRORS as exc:  # it may have happened: its posted version keeps readers recording
        out.errors, out.last_error = out.errors + 1, f"{type(exc).__name__}: {exc}"
        return
    out.add(key, start, time.monotonic(), version)
    out.count += 1


def seed(side: Side, latest: Any) -> Recorded:
    """Write every key once (versions 1 .. keys), so that no read finds none."""
    out = Recorded()
    for key in range(len(side.keys)):
        _write(side, latest, key, key + 1, out)
    return out


def hit_cost(side: Side, batch: int = 500, rounds: int = 10) -> float:
    """Seconds per hit of one warm key: the fastest of ``rounds`` batches (noise only slows)."""
    read, key = side.read, side.keys[0]
    read(key)
    read(key)
    best = math.inf
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(batch):
            read(key)
        best = min(best, time.perf_counter() - began)
    return best / batch


def child_main(text: str, conn: Connection, latest: Any) -> None:
    """A child process: build its side, say ready, obey the parent until it says stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's: it stops us
    spec = Spec.from_json(text)
    side = build_side(spec)
    try:
        seeded = seed(side, latest) if spec.role == "writer" else Recorded()
        _say(conn, {"ready": True})
        _obey(conn, spec, side, latest, seeded)
    finally:
        side.close()
        conn.close()


def _obey(conn: Connection, spec: Spec, side: Side, latest: Any, seeded: Recorded) -> None:
    """Answer ``hitcost`` and ``go`` until ``stop`` (or the parent is gone)."""
    with suppress(EOFError):
        while (request := _hear(conn, None))["cmd"] != "stop":
            if request["cmd"] == "hitcost":
                _say(conn, {"seconds": hit_cost(side)})
            else:
                _run(conn, spec, side, latest, seeded, (request["start"], request["until"]))


def _run(conn: Connection, spec: Spec, side: Side, latest: Any, seeded: Recorded,
         span: tuple[float, float]) -> None:  # fmt: skip
    """Do the child's part of the run, then send what it counted and recorded."""
    w = spec.workload
    rng = random.Random(f"{w.seed}:{spec.role}:{spec.index}")
    if spec.role == "writer":
        _send(conn, _joined(seeded, write_loop(side, latest, rng, w.keys, span, w.rate)), None)
        return
    names, number = zipf_picker(w.keys, w.skew), {name: i for i, name in enumerate(w.names)}
    _sleep_until(span[0])
    before = side.hits()  # the hit cost's hits came before: not the run's
    out = read_loop(side, latest, lambda: number[names(rng)], span[1])
    after = side.hits()
    _send(conn, out, None if before is None or after is None else after - before)


def _joined(a: Recorded, b: Recorded) -> Recorded:
    """Two recordings as one (the writer's seed, then its run)."""
    return Recorded(
        a.keys + b.keys, a.starts + b.starts, a.ends + b.ends, a.versions + b.versions,
        a.count + b.count, a.errors + b.errors, b.last_error or a.last_error,
    )  # fmt: skip


def _send(conn: Connection, out: Recorded, hits: int | None) -> None:
    """What a child reports after its run: its counts, then its four columns as bytes."""
    _say(conn, {"count": out.count, "errors": out.errors, "last": out.last_error, "hits": hits})
    for column in out.columns():
        conn.send_bytes(column.tobytes())


def _say(conn: Connection, message: dict[str, Any]) -> None:
    """One JSON message down the pipe (JSON, not pickle, both ways)."""
    conn.send_bytes(json.dumps(message).encode())


def _hear(conn: Connection, timeout: float | None) -> dict[str, Any]:
    """The next JSON message, within ``timeout`` seconds (None: wait for it)."""
    if timeout is not None and not conn.poll(timeout):
        raise TimeoutError(f"no answer within {timeout}s")
    message: dict[str, Any] = json.loads(conn.recv_bytes())
    return message


# -- the parent ----------------------------------------------------------------------------


class Child:
    """The parent's handle on one child process and its end of the pipe."""

    def __init__(self, spec: Spec, latest: Any) -> None:
        self.spec = spec
        self.conn, theirs = SPAWN.Pipe()
        self.proc: BaseProcess = SPAWN.Process(
            target=child_main, args=(spec.to_json(), theirs, latest), name=spec.name
        )
        self.proc.start()
        theirs.close()  # the child holds its end: EOF here once it is gone

    def ask(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer."""
        _say(self.conn, message)
        return self.hear(timeout)

    def hear(self, timeout: float) -> dict[str, Any]:
        """The child's next message, or an error that names it."""
        try:
            return _hear(self.conn, timeout)
        except (EOFError, TimeoutError) as exc:
            code = self.proc.exitcode
            raise RuntimeError(f"{self.spec.name} (exit code {code}): {exc}") from None

    def result(self, timeout: float) -> tuple[Recorded, int | None]:
        """What the child counted and recorded over the run, and its hits if counted."""
        head = self.hear(timeout)
        out = Recorded(count=head["count"], errors=head["errors"], last_error=head["last"])
        for column in out.columns():
            column.frombytes(self.conn.recv_bytes())
        return out, head["hits"]

    def stop(self) -> None:
        """Ask it to stop: it closes its node and exits (``end`` waits for that)."""
        with suppress(OSError, ValueError):  # gone already
            _say(self.conn, {"cmd": "stop"})

    def end(self) -> None:
        """Make sure it is gone: wait for it to exit, else kill it."""
        self.proc.join(15.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def end_all(children: Sequence[Child]) -> None:
    """Stop every child at once (they close their nodes in parallel), then wait for each."""
    for child in children:
        child.stop()
    with ExitStack() as stack:  # every one ended even if another raised
        for child in children:
            stack.callback(child.end)


@dataclass
class Faults:
    """The faults a run injected: how many, the connections killed, when the last healed."""

    injected: int = 0
    killed: int = 0
    healed: float | None = None


def inject(admin: redis.Redis, tag: str, start: float, workload: Workload) -> Faults:
    """Each fault at its time, kill and pause in turn; then wait out the run."""
    faults = Faults()
    for i, offset in enumerate(workload.fault_times()):
        _sleep_until(start + offset)
        if i % 2 == 0:
            faults.killed += kill_readers(admin, tag)
            faults.healed = time.monotonic()
        else:
            admin.client_pause(PAUSE_MS, all=True)
            faults.healed = time.monotonic() + PAUSE_MS / 1000  # it resumes by itself
        faults.injected += 1
    _sleep_until(start + workload.seconds)
    return faults


def kill_readers(admin: redis.Redis, tag: str) -> int:
    """``CLIENT KILL ID`` of every reader connection that hears invalidations; how many."""
    killed = 0
    for client in admin.client_list():
        if f"{tag}-r" in client.get("name", "") and hears_invalidations(client):
            with suppress(redis.ResponseError):  # gone already
                killed += int(admin.client_kill_filter(_id=client["id"]))
    return killed


def hears_invalidations(client: dict[str, str]) -> bool:
    """A pub/sub connection, or one tracking keys for itself (no redirect: RESP3's push)."""
    flags = client.get("flags", "")
    return "P" in flags or ("t" in flags and int(client.get("redir", "-1")) <= 0)


def _sleep_until(moment: float) -> None:
    """Sleep until ``moment`` on the monotonic clock (at once if it passed)."""
    time.sleep(max(0.0, moment - time.monotonic()))


@dataclass(frozen=True)
class Row:
    """One contender's figures on one server."""

    server: str
    contender: str
    reads: int
    writes: int
    stale: int
    p99: float  # seconds
    stale_after: int | None  # None: no fault, so no "after"
    hits: int | None
    hit_cost: float  # seconds
    errors: int
    faults: int
    killed: int
    recorded: int  # reads recorded in full for the checker
    last_error: str = ""  # one of the errors, if any

    @property
    def stale_fraction(self) -> float:
        """Stale reads over all reads."""
        return self.stale / self.reads if self.reads else 0.0


def run_row(url: str, server: str, contender: Contender, workload: Workload) -> Row:
    """One contender's run on the server at ``url``; every child ended on the way out."""
    tag = f"bakeoff-{secrets.token_hex(3)}"
    with ExitStack() as stack:
        admin = stack.enter_context(redis.Redis.from_url(url, client_name=f"{tag}-admin"))
        latest = SPAWN.RawArray(ctypes.c_longlong, workload.keys)
        children = _start(stack, url, tag, contender, workload, latest)
        cost = children[1].ask({"cmd": "hitcost"}, READY_TIMEOUT)["seconds"]
        gets = _gets(admin)
        start = time.monotonic() + 0.2
        for child in children:
            _say(child.conn, {"cmd": "go", "start": start, "until": start + workload.seconds})
        faults = inject(admin, tag, start, workload)
        results = [child.result(READY_TIMEOUT) for child in children]
        misses = _gets(admin) - gets  # redis-py's misses: the readers' GETs (the writer SETs)
    return judge(server, contender, workload, results, faults, cost, misses)


def _start(stack: ExitStack, url: str, tag: str, contender: Contender, workload: Workload,
           latest: Any) -> list[Child]:  # fmt: skip
    """The writer, then the readers, all ready (the writer has seeded every key)."""
    roles = [("writer", 0)] + [("reader", i) for i in range(workload.readers)]
    children: list[Child] = []
    stack.callback(end_all, children)  # those started so far, if one fails to start
    for role, index in roles:
        children.append(Child(Spec(role, index, url, tag, contender.name, workload), latest))
    for child in children:
        child.hear(READY_TIMEOUT)
    return children


def _gets(admin: redis.Redis) -> int:
    """GET calls the server has served so far."""
    stats = admin.info("commandstats").get("cmdstat_get", {})
    return int(stats.get("calls", 0))


def judge(server: str, contender: Contender, workload: Workload,
          results: list[tuple[Recorded, int | None]], faults: Faults, cost: float,
          misses: int) -> Row:  # fmt: skip
    """The checker's verdict on the merged histories, and the row's figures."""
    names = workload.names
    (writer, _), readers = results[0], results[1:]
    histories = [writer.ops("w", WRITE, names)]
    histories += [out.ops(f"r{i}", READ, names) for i, (out, _) in enumerate(readers)]
    found = stale_reads(merge(histories))
    reads = sum(out.count for out, _ in readers)
    counted = [hits for _, hits in readers]
    hits = sum(h for h in counted if h is not None) if None not in counted else reads - misses
    return Row(
        server, contender.label, reads, writer.count, len(found),
        percentile(sorted(s for _, s in found), 0.99), _after(found, faults, workload), hits,
        cost, writer.errors + sum(out.errors for out, _ in readers), faults.injected,
        faults.killed, sum(len(out.keys) for out, _ in readers),
        next((out.last_error for out, _ in results if out.last_error), ""),
    )  # fmt: skip


def _after(found: list[tuple[Op, float]], faults: Faults, workload: Workload) -> int | None:
    """Stale reads that started ``workload.after`` seconds or more after the last fault healed."""
    if faults.healed is None:
        return None
    since = faults.healed + workload.after
    return sum(op.start >= since for op, _ in found)


# -- the servers, the table, the document ---------------------------------------------------


def run_all(kinds: Sequence[Kind], contenders: Sequence[Contender], workload: Workload,
            say: Callable[[str], None] = print) -> tuple[list[Row], dict[str, str]]:  # fmt: skip
    """Every contender on every server it runs on; the rows, and each server's version."""
    rows: list[Row] = []
    versions: dict[str, str] = {}
    for kind in kinds:
        versions[kind] = version(kind) or "?"
        with ServerProcess(kind) as server:
            for contender in contenders:
                rows += _row_or_skip(server, contender, versions[kind], workload, say)
    return rows, versions


def _row_or_skip(server: ServerProcess, contender: Contender, server_version: str,
                 workload: Workload, say: Callable[[str], None]) -> list[Row]:  # fmt: skip
    """The contender's row on ``server``, or none (said why)."""
    why = contender.runs_on(server.kind, server_version)
    if why is not None:
        say(f"skipped {contender.name} on {server.kind}: {why}")
        return []
    began = time.monotonic()
    row = run_row(server.url, server.kind, contender, workload)
    error = f"; {row.errors} errors, e.g. {row.last_error}" if row.errors else ""
    say(f"{server.kind:6} {contender.label:28} {_fraction(row)} stale, "
        f"{time.monotonic() - began:.0f} s{error}")  # fmt: skip
    return [row]


HEADER = (
    "| server | contender | reads | writes | stale reads | stale fraction | staleness p99 "
    "| stale ≥{after:g} s after last fault | hit rate | hit cost | errors |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
)


def table(rows: Sequence[Row], workload: Workload) -> str:
    """The rows as a markdown table."""
    head = [HEADER[0].format(after=workload.after), HEADER[1]]
    return "\n".join(head + [_table_row(row) for row in rows])


def _table_row(row: Row) -> str:
    """One row of the table."""
    after = "n/a" if row.stale_after is None else f"{row.stale_after:,}"
    hit_rate = "n/a" if row.hits is None or not row.reads else f"{row.hits / row.reads:.2%}"
    return (
        f"| {row.server} | {row.contender} | {row.reads:,} | {row.writes:,} | {row.stale:,} "
        f"| {_fraction(row)} | {row.p99 * 1000:.3f} ms | {after} | {hit_rate} "
        f"| {row.hit_cost * 1e6:.2f} µs | {row.errors} |"
    )


def _fraction(row: Row) -> str:
    """The stale fraction, readable at any size."""
    return "0" if not row.stale else f"{row.stale_fraction:.3g}"


@dataclass(frozen=True)
class Made:
    """How the document was made: the command, its minutes, and the machine's load around it."""

    command: str
    seconds: float
    load: tuple[float, float]  # 1-minute load average before and after: others' work shows


def markdown(rows: Sequence[Row], versions: dict[str, str], workload: Workload,
             made: Made) -> str:  # fmt: skip
    """docs/bakeoff.md: how it was made, the workload, the table and what the columns mean."""
    return "\n".join([
        "# Stale reads: cachelab against redis-py's client-side cache",
        "",
        *_provenance(versions, made),
        "",
        *_workload_text(workload),
        "",
        table(rows, workload),
        "",
        *_columns(workload),
        "",
        *_fault_notes(rows),
        "",
    ])  # fmt: skip


def _provenance(versions: dict[str, str], made: Made) -> list[str]:
    """Who made it, when, where; and that it is one run."""
    servers = ", ".join(f"{kind} {v}" for kind, v in versions.items())
    today = datetime.date.today().isoformat()
    return [
        f"Generated by `{made.command}` (`benchmarks/bakeoff.py`) on {today}, in "
        f"{made.seconds / 60:.1f} minutes; do not edit by hand. Servers: {servers}. Machine: "
        f"{os.cpu_count()} CPU cores shared by the server and every process (load average "
        f"{made.load[0]:.2f} before, {made.load[1]:.2f} after); Python "
        f"{platform.python_version()}, redis-py {redis.__version__}. Every figure comes from "
        "one run: no repeats, no error bars.",
    ]


def _workload_text(w: Workload) -> list[str]:
    """The workload, as run."""
    keys = "uniformly" if w.skew == 0 else f"by Zipf (skew {w.skew:g})"
    return [
        f"Each row is its own run on one private server: {w.readers} reader processes read "
        f"{w.keys} keys, chosen {keys}, back to back for {w.seconds:g} s, while one writer "
        f"process writes {w.rate:g} times a second, each value a version number higher than "
        f"any before. Every {w.fault_every:g} s (none in the last {w.quiet:g} s) a fault, in "
        "turn: **kill**, `CLIENT KILL ID` of every reader connection that receives "
        "invalidations (cachelab's pub/sub subscriptions, a TrackingNode's redirect target; "
        "redis-py's one RESP3 connection, which carries both its reads and its "
        f"invalidations), and **pause**, `CLIENT PAUSE {PAUSE_MS} ALL`. The writer of a "
        "cachelab row is a node built as its readers are (a TrackingNode writes plain keys); "
        "redis-py's is a plain client's `SET`.",
    ]


def _columns(w: Workload) -> list[str]:
    """What each column means."""
    return [
        "**Stale reads**: cachelab's checker (`cachelab.check.stale_reads`) on every "
        "process's history merged on one clock (CLOCK_MONOTONIC): a read is stale when a "
        "write of its key that ended before the read started has a newer version than the "
        "value it returned. A reader records in full only reads older than the newest "
        "version its key's writer had started by the read's end (posted in shared memory "
        "before each write); the others are fresh by construction and only counted. "
        "**Staleness p99**: over the stale reads, the read's start minus the end of the "
        f"first newer write. **Stale ≥{w.after:g} s after last fault**: stale reads that "
        f"started {w.after:g} s or more after the last fault healed (a pause heals "
        f"{PAUSE_MS} ms after it begins). **Hit rate**: hits over reads (cachelab's own "
        "counters; redis-py's: reads less the GETs the server served). **Hit cost**: one "
        "reader, before the run, the fastest of ten batches of 500 reads of one warm key.",
    ]


def _fault_notes(rows: Sequence[Row]) -> list[str]:
    """Per row: faults injected and connections killed (0 killed would be a broken fault)."""
    cells = [f"{r.server} / {r.contender}: {r.faults} faults, {r.killed} killed" for r in rows]
    return ["Faults injected, and reader connections they killed:", "", *(f"- {c}" for c in cells)]


# -- the command line ------------------------------------------------------------------------


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """A parser of ``a,b,c`` that refuses a name not in ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}")
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    """The options, with issue #17's workload as the defaults."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Workload()
    p.add_argument("--seconds", type=float, default=d.seconds, help="each row's run")
    p.add_argument("--fault-every", type=float, default=d.fault_every)
    p.add_argument("--quiet", type=float, default=d.quiet, help="no fault in the last seconds")
    p.add_argument("--after", type=float, default=d.after, help="'stale after' starts here")
    p.add_argument("--readers", type=int, default=d.readers)
    p.add_argument("--keys", type=int, default=d.keys)
    p.add_argument("--rate", type=float, default=d.rate, help="writes per second")
    p.add_argument("--skew", type=float, default=d.skew, help="Zipf skew of reads (0: uniform)")
    p.add_argument("--servers", type=_names(KINDS), default=("redis8", "redis", "valkey"))
    p.add_argument("--contenders", type=_names(tuple(CONTENDERS)), default=DEFAULT_CONTENDERS)
    p.add_argument("--out", type=Path, default=Path("docs/bakeoff.md"))
    return p


def workload_of(args: argparse.Namespace) -> Workload:
    """The workload the options ask for."""
    fields = ("seconds", "fault_every", "quiet", "after", "readers", "keys", "rate", "skew")
    return Workload(**{name: getattr(args, name) for name in fields})


def main(argv: Sequence[str] | None = None) -> None:
    """Run every row, print the table, write the document."""
    args = parser().parse_args(argv)
    workload = workload_of(args)
    missing = [kind for kind in args.servers if binary(kind) is None]
    if missing:
        raise SystemExit(f"no server binary for {', '.join(missing)}: see cachelab.harness.servers")
    began, load = time.monotonic(), os.getloadavg()[0]
    rows, versions = run_all(args.servers, choose(args.contenders), workload)
    command = " ".join(["python -m benchmarks.bakeoff", *(sys.argv[1:] if argv is None else argv)])
    made = Made(command, time.monotonic() - began, (load, os.getloadavg()[0]))
    args.out.write_text(markdown(rows, versions, workload, made))
    print(table(rows, workload))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
