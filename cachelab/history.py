"""A history: the operations a run performed, as the consistency checker reads them."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import NamedTuple

READ = "read"
WRITE = "write"
DELETE = "delete"
INVALIDATE = "invalidate"


class Op(NamedTuple):
    """One operation: who did what to which key, when, and at which version.

    ``hit`` is True for a read served from the local cache (no store access). ``inc`` is
    the store's incarnation the version belongs to ("" if unknown), kept so that histories
    of several processes can be merged (``merge``).
    """

    node: str
    op: str
    key: str
    start: float
    end: float
    version: int
    hit: bool = False
    inc: str = ""


INCARNATION_SHIFT = 64
"""A version of the store's n-th incarnation in a history is ``n << 64 | seq``."""
_SEQ = (1 << INCARNATION_SHIFT) - 1


class Recorder:
    """Collects operations from many nodes and threads (a CacheNode ``recorder=``).

    Versions restart at 1 when the store's counter resets (a new incarnation). So that
    versions still compare across a reset, the recorder numbers each key's incarnations
    in the order it first hears of them and records ``number << 64 | seq``: the first
    incarnation's versions are the sequence numbers themselves. Per key, because the
    checker compares versions of one key only, and a striped namespace has an
    incarnation per stripe: numbered for the whole namespace, they would depend on the
    order each process first met its stripes, and histories of several processes would
    no longer merge.
    """

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._lock = threading.Lock()
        self._incarnations: dict[tuple[str, str], int] = {}
        self._counts: dict[str, int] = {}

    def __call__(
        self,
        node: str,
        op: str,
        key: str,
        start: float,
        end: float,
        version: int,
        hit: bool,
        inc: str = "",
    ) -> None:
        with self._lock:
            number = self._number(key, inc) if inc else 0
            self._ops.append(
                Op(node, op, key, start, end, number << INCARNATION_SHIFT | version, hit, inc)
            )

    def _number(self, key: str, inc: str) -> int:
        """The number of ``key``'s incarnation ``inc``: 0, 1, ... as first heard."""
        number = self._incarnations.get((key, inc))
        if number is None:
            number = self._incarnations[key, inc] = self._counts.get(key, 0)
            self._counts[key] = number + 1
        return number

    def __len__(self) -> int:
        return len(self._ops)

    @property
    def history(self) -> list[Op]:
        """A copy of every operation recorded so far, in completion order."""
        with self._lock:
            return list(self._ops)


Incarnations = dict[tuple[str, str], int]
"""Each ``(key, incarnation)`` of merged histories, numbered 0, 1, ... per key."""


def incarnations(ops: Iterable[Op]) -> Incarnations:
    """Number each key's incarnations for several processes alike.

    Each process numbered them in the order it heard of them, so after a reset one calls
    the new incarnation 1 and a process that joined later calls it 0. Here they are
    numbered by the start of the earliest op, in any history, that names them: on one
    clock, since a new incarnation exists only once the old one's counter is gone.
    """
    order: Incarnations = {}
    counts: dict[str, int] = {}
    for op in sorted(ops, key=lambda op: op.start):
        if op.inc and (op.key, op.inc) not in order:
            order[op.key, op.inc] = counts.get(op.key, 0)
            counts[op.key] = order[op.key, op.inc] + 1
    return order


def merge(histories: Iterable[Sequence[Op]], order: Incarnations | None = None) -> list[Op]:
    """Histories of several processes on one clock as one, ordered by end, with each key's
    incarnations numbered alike (by ``order``, else by ``incarnations`` of these ops)."""
    ops = [op for history in histories for op in history]
    order = incarnations(ops) if order is None else order
    return sorted((_renumbered(op, order) for op in ops), key=lambda op: op.end)


def _renumbered(op: Op, order: Incarnations) -> Op:
    """``op`` with its version's incarnation number replaced by the merged one."""
    if not op.inc:
        return op
    return op._replace(version=order[op.key, op.inc] << INCARNATION_SHIFT | op.version & _SEQ)
