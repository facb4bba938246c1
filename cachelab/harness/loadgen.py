"""A random read/write workload driving one CacheNode from a few threads, with progress.

Each thread draws keys ``k0 .. k{keys-1}`` (Zipf, ``skew`` 0 is uniform) and reads a share
``read_share`` of the time, else sets a ``value_size``-character string naming who wrote
it. Its random source is seeded with ``(seed, node name, thread number)``, so the keys and
the choice of read or write are reproducible; what the node answers depends on timing. A
store error (a fault) is counted and the thread goes on: a fault run measures, it does not
stop.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass
from typing import Any

import redis

from cachelab.node import CacheNode
from cachelab.sim.workloads import zipf_picker
from cachelab.stripes import StripedNode

MAX_VALUE_SIZE = 1 << 20
"""The largest value a workload writes (the update strategy's message limit)."""


@dataclass(frozen=True)
class Workload:
    """What to run: ``ops`` operations over ``threads`` threads (see the module's notes)."""

    ops: int
    threads: int = 1
    seed: int = 0
    keys: int = 100
    read_share: float = 0.9
    value_size: int = 16
    skew: float = 0.99

    def __post_init__(self) -> None:
        _check_int("ops", self.ops, 0)
        _check_int("threads", self.threads, 1)
        _check_int("seed", self.seed, None)
        _check_int("keys", self.keys, 1)
        _check_int("value_size", self.value_size, 0)
        if self.value_size > MAX_VALUE_SIZE:
            raise ValueError(f"value_size must be at most {MAX_VALUE_SIZE}, not {self.value_size}")
        _check_share("read_share", self.read_share, 1.0)
        _check_share("skew", self.skew, None)

    @classmethod
    def from_dict(cls, given: dict[str, Any]) -> Workload:
        """A workload from a JSON request; unknown fields are refused by name."""
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown workload fields: {', '.join(unknown)}")
        return cls(**given)

    def shares(self) -> list[int]:
        """The ops of each thread: as even as can be, the first threads take the rest."""
        return split(self.ops, self.threads)


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` near-equal shares, larger ones first."""
    base, rest = divmod(total, parts)
    return [base + (i < rest) for i in range(parts)]


def _check_int(what: str, value: Any, low: int | None) -> None:
    """Refuse a non-int, or one below ``low``."""
    if type(value) is not int:
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{what} must be >= {low}, not {value}")


def _check_share(what: str, value: Any, high: float | None) -> None:
    """Refuse a non-number, a negative one, or one above ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    if not 0.0 <= value <= (math.inf if high is None else high):
        bounds = ">= 0" if high is None else f"between 0 and {high:g}"
        raise ValueError(f"{what} must be {bounds}, not {value}")


class LoadRun:
    """``workload`` running on ``node``: ``start()``, then ``progress()``; ``close()`` joins."""

    def __init__(self, node: CacheNode | StripedNode, workload: Workload) -> None:
        self.node = node
        self.workload = workload
        self._done = [0] * workload.threads  # one slot per thread: no lock on the hot path
        self._errors = [0] * workload.threads
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(i, n), name=f"cachelab-load-{node.name}-{i}")
            for i, n in enumerate(workload.shares())
        ]

    def start(self) -> LoadRun:
        """Start every thread."""
        for thread in self._threads:
            thread.start()
        return self

    @property
    def finished(self) -> bool:
        """Whether every thread has ended."""
        return not any(thread.is_alive() for thread in self._threads)

    def progress(self) -> dict[str, Any]:
        """Ops done (failed ones included), errors, the total, and whether it is over."""
        return {
            "done": sum(self._done),
            "errors": sum(self._errors),
            "total": self.workload.ops,
            "finished": self.finished,
            "last_error": self._last_error,
        }

    def close(self) -> None:
        """Stop early if still running, and join the threads."""
        self._stop.set()
        for thread in self._threads:
            if thread.ident is not None:
                thread.join()

    def _work(self, index: int, ops: int) -> None:
        """One thread's share of the workload."""
        w = self.workload
        rng = random.Random(f"{w.seed}:{self.node.name}:{index}")
        pick = zipf_picker(w.keys, w.skew)
        for n in range(ops):
            if self._stop.is_set():
                return
            self._step(rng, pick(rng), f"{self.node.name}:{index}:{n}", index)
            self._done[index] += 1

    def _step(self, rng: random.Random, key: str, tag: str, index: int) -> None:
        """One read or write; a store error is counted, not raised."""
        try:
            if rng.random() < self.workload.read_share:
                self.node.get(key)
            else:
                self.node.set(key, tag.ljust(self.workload.value_size, "."))
        except (redis.RedisError, OSError) as exc:
            self._errors[index] += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
