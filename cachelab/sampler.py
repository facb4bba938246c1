"""Live staleness sampling: verify a fraction of local hits against the store, off the hit path.

A node built with ``verify=0.01`` picks about 1 hit in 100 (the ``Sampler`` decides which,
from an injectable random source) and queues its key. Later, in batches (one
``Store.check`` round trip each), a runner asks the store for each key's current version
and value digest, and the sampler *judges* the entry the node holds for the key. The
node's stats then carry ``verified`` and ``verified_stale`` and, from them, an estimate of
the stale fraction of its hits with a 95 % Wilson interval: the checker's measure
(``cachelab.check``) taken live, on a production node, with no history recorded.

Mechanism apart from policy: ``Sampler`` does no I/O and starts no thread. It decides,
queues (bounded: a full queue drops the sample and counts it; the hit never waits) and
judges. Its shells drive it: ``VerifyThread``, the node's daemon thread over Redis, and the
simulator, which verifies at the hit's virtual time (or a set virtual delay later).

**The rule.** The checker calls a read stale when a write newer than the version it
returned completed before the read started. A sample is judged on the live entry the node
holds for its key when the store answers: stale when the store has moved past it, to a
newer version, or to another value under the same version (a writer that bypassed
cachelab's script and replaced the value in place). Where versions do not compare, values
alone decide: when either side is 0 (the ``tracking`` strategy has none: its check returns
version 0 and the current value's digest; a value that outlived its incarnation reads as
version 0 too), when the store's incarnation is not the one the node knows, and for a
cached absence (an absent key checks as the store's *current* sequence number, which says
nothing of the key). Values are compared by digest: the SHA-1 of the value's encoding (of
the raw value under ``tracking``), as the store's check computes it. When the node holds
no live entry for the key by then (it learned of a change and dropped the key, evicted it,
or suspects it), the sample is not judged: it is counted in ``skipped``, since a hit at
that moment would have been a miss.

**Why the entry held at verification, not the one served.** Judged with no lag (the
simulator's default) the two are the same entry, and each verdict is the checker's verdict
on that very read. With a lag (a few ms in the thread), a sample is a moment chosen by a hit
and judged a little later: "would a hit on this key be stale now?". Hits come at random
moments, so those later moments are nearly as good a sample as the hits themselves; only
single verdicts differ. The rule the issue first suggested (stale if the store is newer
than the *served* version and the node still holds that entry) undercounts more: staleness
that begins after a refill within the lag is never seen, and stale entries the node
corrects within the lag count as fresh. Comparing the served version without the "still
holds" condition overcounts: every write of the key within the lag counts.

Measured on the simulator (4 nodes, YCSB-B: 10,000 ops/s, 5 % writes over 1000 Zipf keys,
so the hottest key is written about 60 times a second; messages take 2 to 3 ms), every hit
judged a fixed lag after it, averaged over 5 seeds:

============================  ========  ================  ===========  =============
run, lag                      checker   this rule         served,      served,
                                                          still held   version only
============================  ========  ================  ===========  =============
invalidate, 1 ms              2.98 %    2.96 % (-0.7 %)   2.92 %       4.5 %
invalidate, 5 ms              2.98 %    2.75 % (-8 %)     2.37 %       9.9 %
invalidate, 20 ms             2.98 %    2.65 % (-11 %)    1.30 %       23 %
tracking, 5 ms                2.89 %    2.59 % (-10 %)
invalidate, 5 % loss, no gap  5.05 %    5.00 % (-1 %)     4.59 %       11 %
detection or repair, 5 ms
============================  ========  ================  ===========  =============

(the last row is seed 7 alone: 3.5 % and 2.3 % for "still held" at 20 and 50 ms, where this
rule gives 4.9 % and 4.9 %).

**What bias remains.** A sample whose key the node no longer holds at the check is not
judged (``skipped``), and those are mostly keys written within the lag: the stale-prone
ones. So when the lag exceeds the message delay the estimate runs low by up to a tenth on
a write-heavy workload like the one above, less where keys are written less often; a
change of regime within the lag (a burst, a fault beginning or ending) adds its own. A
shorter ``interval`` shortens the lag. Two rare cases differ from the checker by
construction, whatever the lag: a cached absence whose key was set and deleted again, both
unheard (the value is the same, absent), and a value set again unchanged under ``tracking``
(no version tells).
"""

from __future__ import annotations

import logging
import math
import random as _random
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from cachelab.contract import KeyState, Meta
from cachelab.messages import ABSENT, value_digest
from cachelab.stats import Z95, wilson

__all__ = ["Digest", "Held", "Sampler", "VerifyThread", "judge", "sampler_for"]

log = logging.getLogger(__name__)

Held = tuple[Any, ...] | None
"""The node's live entry for a key at verification, ``(value, version, ...)``, or None."""


Digest = Callable[[Any], str]
"""A held value's digest as the store's ``check`` computes it ("" for a cached absence)."""


def judge(
    meta: Meta, check: KeyState, held: Held, inc: str, digest: Digest = value_digest
) -> bool | None:
    """Whether the entry ``held`` is stale given the store's answer ``(meta, check)``.

    ``inc`` is the incarnation the node knows; ``digest`` computes what the store's check
    would give for the held value (``value_digest``, the SHA-1 of its encoding, for the
    versioned store; of the raw value under ``tracking``). None when the node holds
    nothing for the key: not judged. See the module docstring for the rules.
    """
    if held is None:
        return None
    value, version = held[0], int(held[1])
    stored, stored_digest = check
    if version == 0 or stored == 0 or inc != meta.inc or value is ABSENT:
        return stored_digest != digest(value)
    return stored > version or (stored == version and stored_digest != digest(value))


def _rate(value: Any) -> float:
    """A sampling rate: a number in (0, 1]."""
    if type(value) not in (int, float):
        raise TypeError(
            f"verify must be a fraction of hits in (0, 1] (e.g. 0.01) or None, "
            f"not {type(value).__name__}"
        )
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(
            f"verify must be a fraction of hits in (0, 1] (e.g. 0.01), not {value!r}; "
            "None turns verification off"
        )
    return float(value)


def _positive(what: str, value: Any, kind: type) -> Any:
    """A positive int (or a positive finite number, for ``kind`` float)."""
    ok_type = type(value) is int or (kind is float and type(value) is float)
    if not ok_type or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a positive {kind.__name__}, not {value!r}")
    return value


class Sampler:
    """Which hits to verify, a bounded queue of their keys, and the verdicts so far.

    ``rate`` is the fraction of hits to sample, in (0, 1]. ``random`` is the random source
    (a function returning floats in [0, 1), like ``random.random``), injectable for
    reproducible runs. At most ``capacity`` samples wait; more are dropped and counted.
    A runner takes up to ``batch`` samples per store round trip, every ``interval``
    seconds at most. One sampler serves one node.

    Thread safety: ``offer`` may be called from any number of threads at once (a deque's
    append is atomic, and ``maxlen`` bounds it whatever the race); ``take`` and ``judge``
    from one runner. Counters may undercount by a few under heavy contention, like the
    node's hit counter.
    """

    def __init__(
        self,
        rate: float,
        *,
        random: Callable[[], float] = _random.random,
        capacity: int = 4096,
        batch: int = 128,
        interval: float = 0.005,
    ) -> None:
        if not callable(random):
            raise TypeError(f"random must be callable, not {type(random).__name__}")
        self.rate = _rate(rate)
        self.random = random
        self.capacity: int = _positive("capacity", capacity, int)
        self.batch: int = _positive("batch", batch, int)
        self.interval = float(_positive("interval", interval, float))
        self.owner: str | None = None  # the node it serves
        self._queue: deque[str] = deque(maxlen=self.capacity)
        self._log_q = math.log1p(-self.rate) if self.rate < 1 else 0.0
        self._countdown = self.gap()
        self.sampled = 0  # hits chosen
        self.dropped = 0  # chosen but never checked: queue full, or their round trip failed
        self.verified = 0  # judged
        self.stale = 0  # judged stale
        self.skipped = 0  # checked, but the node held nothing for the key by then
        self.errors = 0  # round trips that failed

    # -- which hits ----------------------------------------------------------

    def gap(self) -> int:
        """How many hits from the last sample to the next one (1: the very next).

        Geometric with parameter ``rate``: the gaps between successes of independent coin
        flips, so a shell counts hits and compares, instead of drawing on every hit.
        """
        if self.rate >= 1.0:
            return 1
        u = 1.0 - self.random()  # in (0, 1]
        return 1 + int(math.log(u) / self._log_q)

    def hit(self) -> bool:
        """One hit happened: whether to sample it (a countdown over ``gap``)."""
        self._countdown -= 1
        if self._countdown > 0:
            return False
        self._countdown = self.gap()
        return True

    # -- the queue ---------------------------------------------------------------

    def offer(self, key: str) -> bool:
        """Queue a sampled hit's key; False (counted as dropped) when the queue is full."""
        self.sampled += 1
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            return False
        self._queue.append(key)
        return True

    @property
    def pending(self) -> int:
        """Samples waiting for verification."""
        return len(self._queue)

    def take(self, limit: int | None = None) -> list[str]:
        """Up to ``limit`` (default ``batch``) waiting keys, oldest first."""
        queue, out = self._queue, []
        for _ in range(self.batch if limit is None else limit):
            try:
                out.append(queue.popleft())
            except IndexError:
                break
        return out

    # -- verdicts ----------------------------------------------------------------

    def judge(
        self,
        meta: Meta,
        checks: Sequence[KeyState],
        held: Sequence[Held],
        inc: str,
        digest: Digest = value_digest,
    ) -> int:
        """Judge a batch: the store's answer and the node's entries, key by key (``inc``
        and ``digest`` as for ``judge``). Return how many were stale."""
        if len(checks) != len(held):
            raise ValueError(f"{len(checks)} checks for {len(held)} keys: the store answers all")
        pairs = zip(checks, held, strict=True)
        verdicts = [judge(meta, check, entry, inc, digest) for check, entry in pairs]
        judged = sum(verdict is not None for verdict in verdicts)
        stale = sum(verdict is True for verdict in verdicts)
        self.verified += judged
        self.skipped += len(verdicts) - judged
        self.stale += stale
        return stale

    def failed(self, samples: int) -> None:
        """A round trip for ``samples`` samples failed: they are dropped, the error counted."""
        self.errors += 1
        self.dropped += samples

    def estimate(self, z: float = Z95) -> tuple[float, float, float]:
        """``(fraction, low, high)``: the stale fraction of hits and its Wilson interval."""
        fraction = self.stale / self.verified if self.verified else 0.0
        return (fraction, *wilson(self.stale, self.verified, z))

    def counts(self) -> dict[str, int]:
        """The counters, named as in ``NodeStats``."""
        return {
            "sampled": self.sampled,
            "verified": self.verified,
            "verified_stale": self.stale,
            "verify_skipped": self.skipped,
            "verify_dropped": self.dropped,
            "verify_errors": self.errors,
        }

    def __repr__(self) -> str:
        return (
            f"<Sampler rate={self.rate:g} verified={self.verified} stale={self.stale} "
            f"pending={self.pending}>"
        )


def sampler_for(verify: float | Sampler | None, owner: str) -> Sampler | None:
    """The node's sampler from its ``verify=`` option (a rate, a Sampler, or None)."""
    if verify is None:
        return None
    sampler = verify if isinstance(verify, Sampler) else Sampler(verify)
    if sampler.owner is not None:
        raise ValueError(f"this Sampler already serves node {sampler.owner!r}; give each its own")
    sampler.owner = owner
    return sampler


class VerifyThread:
    """The threaded runner: a daemon thread that calls ``step`` every ``interval`` seconds.

    ``step`` verifies one batch (``CacheNode.verify_pending``). Nothing ends the thread
    but ``stop``: an exception from ``step`` (a Redis error, a timeout, a bug) is logged
    once per run of failures, without a traceback, and the thread backs off (doubling, up
    to a second), then goes on. ``join()`` waits at most ``JOIN_LIMIT`` seconds: a round
    trip stuck on a server that stopped answering (a client without ``socket_timeout``)
    must not hang ``close()``; the daemon thread then ends when the call returns.
    """

    _MAX_BACKOFF = 1.0
    JOIN_LIMIT = 5.0

    def __init__(self, step: Callable[[], int], interval: float, name: str) -> None:
        self._step = step
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.failures = 0  # consecutive

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop, without waiting."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (unless it is the caller), ``JOIN_LIMIT`` at most."""
        if not self._thread.is_alive() or self._thread is threading.current_thread():
            return
        self._thread.join(self.JOIN_LIMIT if timeout is None else timeout)
        if timeout is None and self._thread.is_alive():
            log.warning(
                "%s: a verification round trip has not returned after %g s; the daemon "
                "thread ends when it does",
                self._thread.name,
                self.JOIN_LIMIT,
            )

    @property
    def alive(self) -> bool:
        """Whether the thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        wait = self._interval
        while not self._stop.wait(wait):
            try:
                self._step()
            except BaseException as exc:  # nothing may end this thread
                self._failed(exc)
                wait = min(self._MAX_BACKOFF, self._interval * 2.0 ** min(self.failures, 30))
                continue
            if self.failures:
                log.info("%s: staleness verification works again", self._thread.name)
                self.failures = 0
            wait = self._interval

    def _failed(self, error: BaseException) -> None:
        """Log the first failure of a run of them (the sampler has counted it)."""
        if not self.failures:
            log.warning(
                "%s: staleness verification failed (%s: %s); retrying with backoff",
                self._thread.name,
                type(error).__name__,
                error,
            )
        self.failures += 1
