"""The classic near-cache failures, each reproduced on purpose, then fixed, and measured.

``CATALOGUE`` maps a name to a ``Scenario``: a title, a one-paragraph explanation,
the metric that tells its variants apart, and the variants themselves. Each
scenario has at least one broken variant (often the naive design) and one fixed
variant; a fixed variant states a ``bound`` its metric stays within (0 means "no
stale read at all"). Every run is scripted and seeded, so it is deterministic:

    from cachelab.sim.scenarios import CATALOGUE
    s = CATALOGUE["stale_set"]
    s.measure(s.broken.run()), s.measure(s.fixed.run())     # (16, 0)
    s.compare()                                             # every variant's metric

Node 0 is ``a``, node 1 is ``b``, and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cachelab.sim.engine import Simulation
from cachelab.sim.network import Fault, Network, Partition
from cachelab.sim.result import SimResult
from cachelab.sim.workloads import Request, every, merge

A, B, C = 0, 1, 2
Script = Callable[[], Iterable[Request]]


@dataclass(frozen=True)
class Metric:
    """How a scenario metric reads: its label, its unit and the scale to that unit."""

    label: str
    unit: str = ""
    scale: float = 1.0

    def format(self, value: float) -> str:
        """``850 ms``, ``16`` or ``0``: the unit's precision, no float dust."""
        scaled = value * self.scale
        if abs(scaled) < 1e-9:
            scaled = 0.0
        text = f"{scaled:.0f}" if scaled == int(scaled) or abs(scaled) >= 10 else f"{scaled:.2g}"
        return f"{text} {self.unit}".strip()


METRICS: dict[str, Metric] = {
    "stale_reads": Metric("stale reads"),
    "staleness_max": Metric("worst staleness", "ms", 1000.0),
    "peak_db_loads": Metric("peak database reads per 50 ms"),
    "peak_store_reads": Metric("peak Redis reads per 50 ms"),
    "store_reads": Metric("Redis reads"),
    "round_trips": Metric("Redis round trips (reads and repair checks)"),
}
"""Every metric a scenario can be judged by."""


@dataclass(frozen=True)
class Variant:
    """One way to run a scenario: Simulation options, and whether it is the broken one."""

    name: str
    label: str
    broken: bool
    script: Script = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    bound: float | None = None

    def simulation(self) -> Simulation:
        """A fresh Simulation with this variant's options."""
        return Simulation(progress=False, **self.options)

    def run(self) -> SimResult:
        """Run the scenario's script under this variant."""
        return self.simulation().run(workload=self.script())


@dataclass(frozen=True)
class Scenario:
    """A failure, its explanation, its variants, and the metric that separates them."""

    name: str
    title: str
    explanation: str
    metric: str
    variants: tuple[Variant, ...]
    window: float = 0.05

    @property
    def broken(self) -> Variant:
        """The first broken variant."""
        return next(v for v in self.variants if v.broken)

    @property
    def fixed(self) -> Variant:
        """The first fixed variant."""
        return next(v for v in self.variants if not v.broken)

    def variant(self, name: str) -> Variant:
        """A variant by name."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(f"{self.name} has no variant {name!r}")

    def measure(self, result: SimResult) -> float:
        """This scenario's metric on one run (peaks are per ``window`` seconds)."""
        return float(result.metrics(self.window)[self.metric])

    def describe(self, value: float) -> str:
        """The metric's value with its unit: ``850 ms``."""
        return METRICS[self.metric].format(value)

    def kept(self, variant: Variant, value: float) -> bool | None:
        """Whether a fixed variant kept its bound (None for a broken one)."""
        if variant.broken or variant.bound is None:
            return None
        return value <= variant.bound + 1e-9

    def compare(self) -> dict[str, float]:
        """Run every variant; its metric by variant name."""
        return {v.name: self.measure(v.run()) for v in self.variants}


def _variants(script: Script, base: dict[str, Any], *specs: tuple[Any, ...]) -> tuple[Variant, ...]:
    """Variants from ``(name, label, broken, bound, options)`` over shared base options."""
    return tuple(
        Variant(name, label, broken, script, MappingProxyType({**base, **opts}), bound)
        for name, label, broken, bound, opts in specs
    )


def _read(t: float, node: int, key: str, latency: float | None = None) -> Request:
    return Request(t, node, "read", key, latency=latency)


def _write(t: float, node: int, key: str, op: str = "write") -> Request:
    return Request(t, node, op, key)


# 1 -------------------------------------------------------------------------------


def _stale_set() -> Iterable[Request]:
    """b starts a slow read of k; a writes k meanwhile; b keeps polling k."""
    script = [_write(0.0, A, "k"), _read(0.1, B, "k", latency=0.05), _write(0.11, A, "k")]
    return merge(script, every(0.05, 0.2, 1.0, B, "read", "k"))


STALE_SET = Scenario(
    "stale_set",
    "The stale set: a slow fill lands after the invalidation",
    "Node b misses k and reads version 1 from Redis, but its reply is slow (50 ms). "
    "Meanwhile a writes version 2 and b receives the invalidation while its read is "
    "still in flight: there is nothing to drop yet. Then the slow reply arrives and "
    "b caches version 1, which nothing will ever invalidate. The fill guard takes a "
    "ticket before the read; the invalidation marks the ticket, and the late fill is "
    "refused. (Tombstones would also catch it; they are off here to isolate the guard.)",
    "stale_reads",
    _variants(
        _stale_set,
        {"nodes": 2, "tombstones": False},
        (
            "no_guard",
            "fill_guard=False: the late fill is cached",
            True,
            None,
            {"fill_guard": False},
        ),
        ("fill_guard", "fill_guard=True: the late fill is refused", False, 0.0, {}),
    ),
)

# 2 -------------------------------------------------------------------------------


def _two_writers() -> Iterable[Request]:
    """a and b write k 1 ms apart, while messages take 5 ms; b reads as a's message lands."""
    script = [_write(0.0, A, "k"), *(_read(0.05, n, "k") for n in (A, B, C))]
    script += [_write(0.1, A, "k"), _write(0.101, B, "k")]
    script += [_read(0.1052, B, "k"), _read(0.1056, B, "k")]  # after a's message, before b's
    polls = (every(0.05, 0.2 + n * 0.01, 1.0, n, "read", "k") for n in (A, B, C))
    return merge(script, *polls)


TWO_WRITERS = Scenario(
    "two_writers",
    "Two writers set the cache in opposite order",
    "a writes version 2 and b writes version 3 a millisecond later, while messages "
    "take 5 ms. b caches its own version 3 at once; then a's older message arrives "
    "and, without versions (push the new value, ordering=False), overwrites it with "
    "version 2. Redis holds version 3. When b's own message comes back it changes "
    "nothing (set:own: b filled itself when it wrote), so b serves version 2 until the "
    "end of the run, as the naive recipe would. With versions, a message older than what a node "
    "already has is ignored; with invalidation, a node never takes a value from a "
    "message, it reloads from Redis. Either fixes it.",
    "stale_reads",
    _variants(
        _two_writers,
        {"nodes": 3, "network": Network(delay=0.005)},
        (
            "update_unordered",
            "update, ordering=False",
            True,
            None,
            {"strategy": "update", "ordering": False},
        ),
        ("invalidate_versions", "invalidate, ordering=True", False, 0.0, {}),
        ("update_versions", "update, ordering=True", False, 0.0, {"strategy": "update"}),
    ),
)

# 3 -------------------------------------------------------------------------------


def _db_script(writer: list[Request]) -> Script:
    """Cache-aside: b reads k (warm), then polls it while a runs ``writer``."""

    def script() -> Iterable[Request]:
        warm = [_write(0.0, A, "k"), _read(0.01, B, "k"), _read(1.005, B, "k")]
        return merge(sorted(warm + writer), every(0.05, 1.05, 2.0, B, "read", "k"))

    return script


_GAP, _DOUBLE = 0.02, 0.1
DB_ORDERING = Scenario(
    "db_ordering",
    "Delete before write, write then invalidate, and the delayed double delete",
    "Cache-aside with a database behind Redis, and a writer whose database write takes "
    f"{_GAP * 1000:.0f} ms. Deleting the cache entry first opens a window: reader b misses, "
    "reads the old row before the write commits, and puts it back into Redis for "
    "everyone, after the delete; it stays until the next write. Writing the database "
    "first and invalidating afterwards leaves only the commit-to-invalidate window (and "
    "the conditional fill refuses a reader that loaded before the invalidation). The "
    f"'delayed double delete' deletes again {_DOUBLE * 1000:.0f} ms later, which bounds "
    "the damage by that delay.",
    "staleness_max",
    (
        Variant(
            "delete_then_write",
            "invalidate, then write the database",
            True,
            _db_script([_write(1.0, A, "k", "invalidate"), _write(1.0 + _GAP, A, "k")]),
            MappingProxyType({"nodes": 2, "database": True}),
        ),
        Variant(
            "write_then_invalidate",
            "write the database, then invalidate",
            False,
            _db_script([_write(1.0, A, "k"), _write(1.0 + _GAP, A, "k", "invalidate")]),
            MappingProxyType({"nodes": 2, "database": True}),
            bound=_GAP + 0.005,
        ),
        Variant(
            "double_delete",
            f"invalidate, write, invalidate again {_DOUBLE * 1000:.0f} ms later",
            False,
            _db_script(
                [
                    _write(1.0, A, "k", "invalidate"),
                    _write(1.0 + _GAP, A, "k"),
                    _write(1.0 + _GAP + _DOUBLE, A, "k", "invalidate"),
                ]
            ),
            MappingProxyType({"nodes": 2, "database": True}),
            bound=_DOUBLE + 0.005,
        ),
    ),
)

# 4 -------------------------------------------------------------------------------


def _lost_message() -> Iterable[Request]:
    """b caches k; a writes k at 1.1 while b is away; a writes x at 2.0; b polls k."""
    script = [_write(0.0, A, "k"), _write(1.1, A, "k"), _write(2.0, A, "x")]
    return merge(script, every(0.05, 0.5, 3.0, B, "read", "k"))


_AWAY = (1.0, 1.2)
_SILENT = Network(partitions=(Partition(B, *_AWAY),))
_TOLD = [Fault(_AWAY[0], "disconnect", B, _AWAY[1] - _AWAY[0])]
_LOST_TTL = 0.4
LOST_MESSAGE = Scenario(
    "lost_message",
    "A message lost while a subscriber reconnects",
    "Pub/Sub is at-most-once: b's connection drops from 1.0 s to 1.2 s and a's write at "
    "1.1 s never reaches it. redis-py resubscribes silently, so the naive subscriber "
    "(modelled as a silent cut) serves the old value until the end. cachelab's bus "
    "reports the reconnect, and the node serves nothing it holds until it has repaired "
    "(checked each entry against Redis and dropped the changed ones): no stale read at "
    "all. Gap detection needs no notice: the next message (a write of x at 2.0 s) carries "
    "a sequence number that skips one, and the node repairs then, so staleness lasts until the "
    f"next message. A TTL of {_LOST_TTL * 1000:.0f} ms bounds staleness by the TTL "
    "without any of that.",
    "staleness_max",
    _variants(
        _lost_message,
        {"nodes": 2, "reconnect_flush": False, "gap_detection": False, "network": _SILENT},
        ("naive", "silent resubscribe, no gap detection, no TTL", True, None, {}),
        (
            "reconnect_flush",
            "the bus reports the reconnect; the node repairs",
            False,
            0.0,
            {"reconnect_flush": True, "network": Network(), "faults": _TOLD},
        ),
        (
            "gap_detection",
            "silent, but the next sequence number shows the gap",
            False,
            0.95,
            {"gap_detection": True},
        ),
        ("ttl", f"silent, ttl={_LOST_TTL}", False, _LOST_TTL, {"ttl": _LOST_TTL}),
    ),
)

# 5 -------------------------------------------------------------------------------


def _reorder() -> Iterable[Request]:
    """Every 100 ms a and b write k 1 ms apart; 50 ms later, when all is quiet, all read."""
    rounds = [
        request
        for r in range(30)
        for request in (
            _write(r * 0.1, A, "k"),
            _write(r * 0.1 + 0.001, B, "k"),
            *(_read(r * 0.1 + 0.05 + n * 0.001, n, "k") for n in (A, B, C)),
        )
    ]
    return rounds


_SHAKY = Network(delay=0.002, jitter=0.001, duplicate=0.3, reorder=0.3, reorder_delay=0.02)
REORDER = Scenario(
    "reorder",
    "Out-of-order and duplicated delivery",
    "Redis delivers in order on one connection, but replays, retries and a second "
    "connection do not: here 30 % of messages are held back up to 20 ms and 30 % are "
    "delivered twice. With the update strategy and no versions, a late or repeated "
    "older message overwrites a newer value, which then stays. With per-key versions "
    "that only go up, older and duplicate messages are ignored. Reads happen only when "
    "every message has landed, so any stale read is a lasting one.",
    "stale_reads",
    _variants(
        _reorder,
        {"nodes": 3, "strategy": "update", "network": _SHAKY, "seed": 5},
        ("unordered", "update, ordering=False", True, None, {"ordering": False}),
        ("versions", "update, ordering=True", False, 0.0, {}),
    ),
)

# 6 -------------------------------------------------------------------------------


def _evicted() -> Iterable[Request]:
    """b slowly reads k; b writes k; two other fills evict k; the slow fill lands."""
    return merge(
        [
            _write(0.0, A, "k"),
            _read(0.1, B, "k", latency=0.1),
            _write(0.11, B, "k"),
            _read(0.12, B, "x"),
            _read(0.13, B, "y"),
            _read(0.22, B, "k"),  # between the late fill (0.2) and b's own message (0.26)
            _read(0.24, B, "k"),
        ],
        every(0.05, 0.3, 1.0, B, "read", "k"),
    )


TOMBSTONES = Scenario(
    "tombstones",
    "A newer entry is evicted, then an old fill lands",
    "Meta's 'cache made consistent' bug. b starts a slow read of k (version 1), then "
    "writes k itself (version 2, cached at once). Its cache holds two entries, so two "
    "more fills evict k. Then the slow read returns version 1, and with k gone there "
    "is no newer entry to compare with. b's own message, when it comes back, changes "
    "nothing (set:own: b filled itself when it wrote), so b serves version 1 until the "
    "end of the run. A tombstone keeps the evicted version as the "
    "minimum a fill must carry. (The fill guard catches this one too: b's own write "
    "marks its load in flight. It is off here in both variants, to isolate the "
    "tombstone, which also covers newer versions no ticket saw, such as a value "
    "another read filled.)",
    "stale_reads",
    _variants(
        _evicted,
        {"nodes": 2, "max_entries": 2, "network": Network(delay=0.15), "fill_guard": False},
        ("no_tombstones", "tombstones=False", True, None, {"tombstones": False}),
        ("tombstones", "tombstones=True", False, 0.0, {}),
    ),
)

# 7 -------------------------------------------------------------------------------


def _session(reader: int) -> Script:
    """A user writes k through a, then reads it 1 ms later through ``reader``."""

    def script() -> Iterable[Request]:
        warm = [_write(0.0, A, "k"), _read(0.1, A, "k"), _read(0.1, B, "k")]
        rounds = [
            request
            for r in range(10)
            for request in (
                _write(0.2 + r * 0.1, A, "k"),
                _read(0.201 + r * 0.1, reader, "k"),
                _read(0.25 + r * 0.1, B, "k"),  # other traffic keeps b's copy warm
            )
        ]
        return warm + rounds

    return script


READ_YOUR_WRITES = Scenario(
    "read_your_writes",
    "Read-your-writes: on the writer, and on a peer",
    "A user writes through node a and reads back 1 ms later. On a, the write path "
    "fills a's own cache with the new version before returning, so the user always "
    "sees the write. If the next request lands on b, b still serves the old value "
    "until the message arrives (5 ms here): invalidation is asynchronous. Sticky "
    "sessions (or reading through Redis after a write) give read-your-writes; the "
    "checker's per-node read-your-writes count cannot see a session that moved, so "
    "the metric is stale reads.",
    "stale_reads",
    (
        Variant(
            "peer",
            "read back on b",
            True,
            _session(B),
            MappingProxyType({"nodes": 2, "network": Network(delay=0.005)}),
        ),
        Variant(
            "writer",
            "read back on a (sticky session)",
            False,
            _session(A),
            MappingProxyType({"nodes": 2, "network": Network(delay=0.005)}),
            bound=0.0,
        ),
    ),
)

# 8 -------------------------------------------------------------------------------


def _insert() -> Iterable[Request]:
    """b looks up a missing key; an outside import inserts it; b keeps looking."""
    script = [_read(0.1, B, "new"), Request(0.5, -1, "external", "new"), _read(1.0, A, "new")]
    return merge(script, every(0.05, 0.6, 2.0, B, "read", "new"))


NEGATIVE_CACHE = Scenario(
    "negative_cache",
    "A negative-cache entry hides a new insert",
    "b looks up a key that does not exist and caches the absence. Then the key is "
    "inserted by something that announces nothing (a bulk import writing Redis "
    "directly). Node a, which never asked, sees the new row at once; b keeps "
    "answering 'absent'. Negative caching is only safe when every insert sends a "
    "message; without it every miss costs a store read (compare store_reads).",
    "stale_reads",
    _variants(
        _insert,
        {"nodes": 2},
        ("negative_cache", "negative_cache=True", True, None, {}),
        ("no_negative_cache", "negative_cache=False", False, 0.0, {"negative_cache": False}),
    ),
)

# 9 -------------------------------------------------------------------------------

_HERD_NODES = 8


def _herd() -> Iterable[Request]:
    """Every node reads the hot key every ms; a updates the database at 0.1 s."""
    writer = [_write(0.1, A, "hot"), _write(0.1, A, "hot", "invalidate")]
    polls = (every(0.001, n * 0.0001, 0.3, n, "read", "hot") for n in range(_HERD_NODES))
    return merge(writer, *polls)


HERD = Scenario(
    "herd",
    "A hot key invalidated under load (the thundering herd)",
    f"{_HERD_NODES} nodes each read one hot key every millisecond; its database query "
    "takes 20 ms. When it is invalidated, every read in those 20 ms misses, and without "
    "protection each one queries the database. Single flight lets one read per node "
    "load while the others wait for it: at most one query per node. A lease across "
    "nodes (memcache's fix: the first miss gets the lease, the others retry Redis "
    "every 2 ms) lets one query through for the whole cluster, at the price of some "
    "extra Redis reads and latency. The lease is a model of a Redis SET NX lock in the "
    "simulator, not part of CacheNode. Metric: peak database queries per 50 ms.",
    "peak_db_loads",
    _variants(
        _herd,
        {"nodes": _HERD_NODES, "database": True, "db_latency": 0.02},
        ("unprotected", "every miss queries the database", True, None, {"single_flight": False}),
        ("single_flight", "one load per node", False, float(_HERD_NODES), {}),
        ("lease", "one load per cluster (lease)", False, 1.0, {"lease": True}),
    ),
)

# 10 ------------------------------------------------------------------------------


def _partitioned() -> Iterable[Request]:
    """b is cut off from 1.0 s to 2.0 s; a writes k at 1.2 s and x at 2.5 s; b polls k."""
    script = [_write(0.0, A, "k"), _write(1.2, A, "k"), _write(2.5, A, "x")]
    return merge(script, every(0.05, 0.5, 3.0, B, "read", "k"))


_PART_TTL = 0.2
PARTITION = Scenario(
    "partition",
    "A partitioned node, and what a TTL does to its staleness",
    "b's subscription is cut silently from 1.0 s to 2.0 s (a half-open connection: "
    "no error, no message). It misses a's write at 1.2 s and serves the old value; "
    "even after the partition heals it does not know, until the next message shows a "
    "sequence gap (at 2.5 s). No message-based mechanism can do better during the "
    f"partition itself; a TTL ({_PART_TTL * 1000:.0f} ms) bounds how stale b can be.",
    "staleness_max",
    _variants(
        _partitioned,
        {"nodes": 2, "network": Network(partitions=(Partition(B, 1.0, 2.0),))},
        ("no_ttl", "gap detection only", True, None, {}),
        ("ttl", f"ttl={_PART_TTL}", False, _PART_TTL, {"ttl": _PART_TTL}),
    ),
)

# 11 ------------------------------------------------------------------------------


def _external() -> Iterable[Request]:
    """Everyone caches k; at 1.0 s an outside writer changes it in Redis directly."""
    polls = (every(0.05, 0.1 + n * 0.01, 3.0, n, "read", "k") for n in (A, B, C))
    return merge([_write(0.0, A, "k"), Request(1.0, -1, "external", "k")], *polls)


_EXT_TTL = 0.3
EXTERNAL_WRITER = Scenario(
    "external_writer",
    "An external writer bypasses the nodes",
    "A script or another service writes k straight into Redis. No node publishes, so "
    "Pub/Sub has nothing to deliver, and every node serves its cached copy "
    "indefinitely (the write takes a sequence number, but gap detection only notices "
    f"at the next message, which may never come). A TTL ({_EXT_TTL * 1000:.0f} ms) bounds "
    "the staleness; only server-assisted tracking (Redis CLIENT TRACKING, the "
    "'tracking' strategy of a later issue) sees writes that bypass the nodes.",
    "staleness_max",
    _variants(
        _external,
        {"nodes": 3},
        ("no_ttl", "no TTL", True, None, {}),
        ("ttl", f"ttl={_EXT_TTL}", False, _EXT_TTL, {"ttl": _EXT_TTL}),
    ),
)

# 12 ------------------------------------------------------------------------------

_BLIP_KEYS, _BLIP_CHANGED, _BLIP_BATCH = 100, 5, 25


def _blip() -> Iterable[Request]:
    """a writes 100 keys; b reads them all; b's connection drops from 1.0 s to 1.2 s while a
    changes 5 of them; from 1.5 s b reads every key again."""
    keys = [f"k{i}" for i in range(_BLIP_KEYS)]
    return [
        *(_write(0.001 * i, A, key) for i, key in enumerate(keys)),
        *(_read(0.5 + 0.001 * i, B, key) for i, key in enumerate(keys)),
        *(_write(1.1 + 0.001 * i, A, key) for i, key in enumerate(keys[:_BLIP_CHANGED])),
        *(_read(1.5 + 0.001 * i, B, key) for i, key in enumerate(keys)),
    ]


_REPAIRED = _BLIP_KEYS + _BLIP_CHANGED + -(-_BLIP_KEYS // _BLIP_BATCH)
BLIP = Scenario(
    "blip",
    "A blip: flush, repair, or replay the stream",
    f"b holds {_BLIP_KEYS} warm keys when its connection drops for 200 ms, and a changes "
    f"{_BLIP_CHANGED} of them meanwhile. Every variant is correct (no stale read): what "
    "differs is what b's recovery costs Redis. On pub/sub the messages of the blip are "
    "gone: with repair=False b flushes and reloads every key (the cold cache); with repair "
    f"it checks its suspects {_BLIP_BATCH} keys a round trip and reloads only the changed "
    "ones. On the stream strategy nothing was lost: b reads the stream on from its last "
    "entry id, which drops the changed keys, and trusts the rest again with no round trip "
    "at all. Only a stream trimmed past b's last id (a blip longer than the cap covers) "
    "would cost it a repair.",
    "round_trips",
    _variants(
        _blip,
        {"nodes": 2, "repair_batch": _BLIP_BATCH, "faults": [Fault(1.0, "disconnect", B, 0.2)]},
        ("flush", "pub/sub, repair=False: b flushes, then reloads every key", True, None, {
            "repair": False,
        }),
        ("repair", f"pub/sub: b repairs ({_BLIP_BATCH} keys a check)", False, _REPAIRED, {}),
        (
            "stream",
            "stream: b replays what it missed; no check",
            False,
            _BLIP_KEYS + _BLIP_CHANGED,
            {"strategy": "stream"},
        ),
    ),
)

CATALOGUE: dict[str, Scenario] = {
    s.name: s
    for s in (
        STALE_SET,
        TWO_WRITERS,
        DB_ORDERING,
        LOST_MESSAGE,
        REORDER,
        TOMBSTONES,
        READ_YOUR_WRITES,
        NEGATIVE_CACHE,
        HERD,
        PARTITION,
        EXTERNAL_WRITER,
        BLIP,
    )
}
"""Every scenario by name: the eleven of issue 3, in its order, then issue 9's blip."""
