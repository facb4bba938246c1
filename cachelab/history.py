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


class Recorder:
    """Collects operations from many nodes and threads (a CacheNode ``recorder=``)."""

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._lock = threading.Lock()

    def __call__(
        self, node: str, op: str, key: str, start: float, end: float, version: int, hit: bool
    ) -> None:
        with self._lock:
            self._ops.append(Op(node, op, key, start, end, version, hit))

    def __len__(self) -> int:
        return len(self._ops)

    @property
    def history(self) -> list[Op]:
        """A copy of every operation recorded so far, in completion order."""
        with self._lock:
            return list(self._ops)
