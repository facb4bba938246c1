"""The fault matrix's cost column: the server's work in a cell, beyond its baselines."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.client import Pipeline, PubSub

from benchmarks.message_cost import server_work

BASELINE_RUNS = 5  # no-fault runs per server and strategy: their spread is the noise
NOISE = 2  # a cost within this many times their spread prints as "~0" (the header's odds
# of a no-fault cell printing a figure, 1 in 80, are for these two numbers)
_ERRORS = (redis.RedisError, OSError)
T = TypeVar("T")


@dataclass(frozen=True)
class Work:
    """What the server did: the commands it ran, and the µs it spent in them."""

    commands: float = 0
    usec: float = 0.0

    def __add__(self, other: Work) -> Work:
        return Work(self.commands + other.commands, self.usec + other.usec)

    def __sub__(self, other: Work) -> Work:
        return Work(self.commands - other.commands, self.usec - other.usec)

    @classmethod
    def now(cls, admin: redis.Redis) -> Work:
        """The server's totals since it started (``INFO commandstats``)."""
        _, calls, ms = server_work(admin)
        return cls(calls, ms * 1000)


@dataclass(frozen=True)
class Spent:
    """A cell's server work, from the workload's start to the settle after it."""

    work: Work  # the fault's own commands left out
    ops: int  # the workload's reads and writes
    seconds: float


@dataclass(frozen=True)
class Baseline:
    """One server and strategy with no fault: an idle run, and runs of the workload."""

    idle: Spent  # the nodes up, no reads or writes
    runs: tuple[Spent, ...]

    def background(self, measure: str) -> float:
        """``measure`` per second with no workload: heartbeats, stream readers' polls."""
        return float(getattr(self.idle.work, measure)) / self.idle.seconds

    def per_op(self, measure: str) -> list[float]:
        """``measure`` per workload operation in each run, its background taken out."""
        rate = self.background(measure)
        return [(getattr(r.work, measure) - rate * r.seconds) / max(r.ops, 1) for r in self.runs]

    def extra(self, spent: Spent, measure: str) -> tuple[float, float]:
        """A cell's ``measure`` beyond this baseline's at the cell's length and operations,
        and the spread of the runs there."""
        per_op = self.per_op(measure)
        expected = self.background(measure) * spent.seconds + statistics.mean(per_op) * spent.ops
        spread = (max(per_op) - min(per_op)) * spent.ops
        return float(getattr(spent.work, measure)) - expected, spread


def shown(extra: float, spread: float) -> str:
    """``extra`` to the unit, or "~0" when within ``NOISE`` times the no-fault runs' spread."""
    return "~0" if abs(extra) <= NOISE * spread else f"{extra:+,.0f}"


def _name(args: Sequence[Any]) -> str:
    """The name ``INFO commandstats`` files a redis-py command under (``client|kill``)."""
    return str(args[0]).lower().replace(" ", "|")


class Tally(redis.Redis):
    """The faults' admin client: it tallies what it sends by command name, so that a fault's
    own commands are left out of what it cost."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sent: Counter[str] = Counter()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Tally one command, then send it."""
        self.sent[_name(args)] += 1
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        """A pipeline whose commands are tallied as they are queued."""
        pipe = super().pipeline(transaction, shard_hint)
        pipe.pipeline_execute_command = self._tallying(pipe.pipeline_execute_command)  # type: ignore[method-assign]
        return pipe

    def pubsub(self, **options: Any) -> PubSub:
        """A pub/sub connection whose commands (SUBSCRIBE) are tallied."""
        listener = super().pubsub(**options)
        listener.execute_command = self._tallying(listener.execute_command)  # type: ignore[method-assign]
        return listener

    def _tallying(self, send: Callable[..., T]) -> Callable[..., T]:
        """``send``, tallying each command it is given."""

        def tallied(*args: Any, **options: Any) -> T:
            self.sent[_name(args)] += 1
            return send(*args, **options)

        return tallied


Baselines = Mapping[tuple[str, str], Baseline]  # by server and strategy
