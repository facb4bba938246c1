"""The bake-off's contenders and its child processes: a reader or the writer of one row,
each with its cache or client (``benchmarks.bakeoff`` runs them; see its docstring)."""

from __future__ import annotations

import json
import math
import random
import signal
import time
from array import array
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import cachetools
import redis
from redis.cache import CacheConfig

from cachelab.harness.servers import Kind
from cachelab.history import Op
from cachelab.sim.workloads import zipf_picker

PAUSE_MS = 200
"""How long the pause fault stalls every client (``CLIENT PAUSE <ms> ALL``)."""
ERRORS = (redis.RedisError, OSError)
READY_TIMEOUT = 60.0
"""Seconds a child may take to start, connect and say it is ready."""
CSC_MIN = (7, 4)
"""redis-py's client-side cache needs Redis 7.4 or later (and no Valkey: it checks)."""


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


def choose(names: Sequence[str]) -> list[Contender]:
    """The contenders named."""
    return [CONTENDERS[name] for name in names]


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


def lru_side() -> Side:
    """The baseline of a hit: ``cachetools.LRUCache.get`` on one warm key."""
    lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=10)
    lru["k"] = 1
    return Side(["k"], lru.get, lru.__setitem__, lambda: None)


def child_main(text: str, conn: Connection, latest: Any) -> None:
    """A child process: build its side, say ready, obey the parent until it says stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the parent's: it stops us
    spec = Spec.from_json(text)
    side = build_side(spec)
    try:
        seeded = seed(side, latest) if spec.role == "writer" else Recorded()
        say(conn, {"ready": True})
        _obey(conn, spec, side, latest, seeded)
    finally:
        side.close()
        conn.close()


def _obey(conn: Connection, spec: Spec, side: Side, latest: Any, seeded: Recorded) -> None:
    """Answer ``hitcost`` and ``go`` until ``stop`` (or the parent is gone)."""
    with suppress(EOFError):
        while (request := hear(conn, None))["cmd"] != "stop":
            if request["cmd"] == "hitcost":
                say(conn, {"seconds": hit_cost(side), "baseline": hit_cost(lru_side())})
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
    sleep_until(span[0])
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
    say(conn, {"count": out.count, "errors": out.errors, "last": out.last_error, "hits": hits})
    for column in out.columns():
        conn.send_bytes(column.tobytes())


def say(conn: Connection, message: dict[str, Any]) -> None:
    """One JSON message down the pipe (JSON, not pickle, both ways)."""
    conn.send_bytes(json.dumps(message).encode())


def hear(conn: Connection, timeout: float | None) -> dict[str, Any]:
    """The next JSON message, within ``timeout`` seconds (None: wait for it)."""
    if timeout is not None and not conn.poll(timeout):
        raise TimeoutError(f"no answer within {timeout}s")
    message: dict[str, Any] = json.loads(conn.recv_bytes())
    return message

def sleep_until(moment: float) -> None:
    """Sleep until ``moment`` on the monotonic clock (at once if it passed)."""
    time.sleep(max(0.0, moment - time.monotonic()))

