"""CLIENT TRACKING in the simulator: the server's side of it, over the MemoryStore.

The nodes are real ``TrackingNode``s; only their keyspace is simulated. As in Redis:

- in the default mode the server remembers, per node, each key the node read; a write
  of the key tells every node that read it since (one message each) and forgets the key
  for all of them, until they read it again;
- in BCAST mode every write tells every node, whatever it read;
- ``noloop`` spares the writer its own invalidation;
- a node whose connections were reset (a crash, a lost redirect) tracks nothing.

Values live in the MemoryStore (written without a message), so every write still has
a version there: the history and the checker compare reads with those versions.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from cachelab.sim.store import MemoryStore


class TrackingServer:
    """Who tracks which key, and whom a write must tell."""

    def __init__(self, store: MemoryStore, n: int, *, bcast: bool, noloop: bool) -> None:
        self.store = store
        self.bcast = bcast
        self.noloop = noloop
        self.interest: list[set[str]] = [set() for _ in range(n)]
        self.sent = 0

    def read(self, i: int, key: str) -> bytes | None:
        """Node ``i`` reads ``key``: its raw value (or None), and the server tracks it."""
        if not self.bcast:
            self.interest[i].add(key)
        return self.store.read(key).value

    def told(self, key: str, writer: int | None) -> list[int]:
        """``key`` changed (by node ``writer``, or by someone else): the nodes to tell."""
        if self.bcast:
            told = list(range(len(self.interest)))
        else:
            told = [i for i, keys in enumerate(self.interest) if key in keys]
            for i in told:
                self.interest[i].discard(key)
        if self.noloop and writer in told:
            told.remove(writer)
        self.sent += len(told)
        return told

    def forget(self, i: int) -> None:
        """Node ``i``'s connections were reset: the server tracks nothing for it any more."""
        self.interest[i].clear()


class SimKeyspace:
    """One node's view of the tracked keyspace (the ``Keyspace`` a TrackingNode reads)."""

    prefix = ""

    def __init__(self, server: TrackingServer, i: int) -> None:
        self.server = server
        self.i = i
        server.forget(i)

    def read(self, key: str) -> tuple[Any, float | None]:
        """GET (tracked); keys never expire in the simulator."""
        return self.server.read(self.i, key), None

    def set(self, key: str, value: str | bytes) -> None:
        """SET: the store's write hook tells the server."""
        raw = value.decode() if isinstance(value, bytes) else value
        self.server.store.write("set", key, raw, None)

    def set_if_absent(self, key: str, value: str | bytes) -> bool:
        """SET NX."""
        if self.server.store.read(key).value is not None:
            return False
        self.set(key, value)
        return True

    def delete(self, key: str) -> None:
        """DEL."""
        self.server.store.write("del", key, "", None)

    def digests(self, keys: Sequence[str]) -> list[str]:
        """The store's digests of each key's value."""
        return [digest for _, digest in self.server.store.check(keys)[1]]

    def close(self) -> None:
        """Nothing to release."""


class TrackedVersions:
    """The store version behind each number a tracking node gave an entry (for the history).

    A tracking node versions its entries with its own numbers; the checker compares the
    store's. A load's read version is noted when it reads (``read``), tied to the number
    it fills under (``filled``), and looked up when the entry is hit (``of``).
    """

    def __init__(self) -> None:
        self._loads: dict[Hashable, int] = {}
        self._entries: dict[tuple[str, str, int], int] = {}

    def read(self, load: Hashable, version: int) -> None:
        """A load read the store at ``version``."""
        self._loads[load] = version

    def filled(self, node: str, key: str, number: int, load: Hashable) -> int:
        """A load settled under the node's ``number``; the store version it read."""
        version = self._loads.pop(load, 0)
        self._entries[node, key, number] = version
        return version

    def of(self, node: str, key: str, number: int) -> int:
        """The store version of ``node``'s entry numbered ``number`` (0 if unknown)."""
        return self._entries.get((node, key, number), 0)
