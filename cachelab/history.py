"""A history: the operations a run performed, as the consistency checker reads them."""

from __future__ import annotations

import threading
from typing import NamedTuple

READ = "read"
WRITE = "write"
DELETE = "delete"
INVALIDATE = "invalidate"


class Op(NamedTuple):
    """One operation: who did what to which key, when, and at which version.

    ``hit`` is True for a read served from the local cache (no store access).
    """

    node: str
    op: str
    key: str
    start: float
    end: float
    version: int
    hit: bool = False


INCARNATION_SHIFT = 64
"""A version of the store's n-th incarnation in a history is ``n << 64 | seq``."""


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
                Op(node, op, key, start, end, number << INCARNATION_SHIFT | version, hit)
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
