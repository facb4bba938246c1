"""The bounded local store: LRU + TTL backstop + version floors ("tombstones") + suspects.

Like a cachetools ``Cache`` it knows nothing of Redis and is not thread-safe: the
node holds one lock around every call. Every entry carries the version it was
read at; every entry that leaves (evicted, expired, invalidated) leaves its
version behind as a short-lived floor, so an older fill arriving late is refused.

A *suspect* is an entry that may have gone stale (messages were lost): it moves out
of ``data``, so the hit path never sees it, until repair confirms it by version and
digest (``confirm``) or drops it, or a stream's replay shows nothing changed it
(``restore``). Any change to a key ends its suspicion.

Why not cachetools itself: the floors need the version of whatever an eviction or
expiry pushes out, and the node's hit path must beat ``cachetools.LRUCache.get``,
which no wrapper around it can. One OrderedDict does both.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

Timer = Callable[[], float]
_FOREVER = float("inf")


class LocalStore:
    """A bounded LRU of ``key -> (value, version, expires_at)`` with version floors."""

    def __init__(
        self,
        maxsize: int,
        ttl: float | None = None,
        *,
        timer: Timer = time.monotonic,
        tombstones: bool = True,
        tombstone_ttl: float = 60.0,
        ordering: bool = True,
        on_evict: Callable[[str, int], None] | None = None,
    ) -> None:
        if type(maxsize) is not int or maxsize < 1:
            raise ValueError(f"max_entries must be a positive int, not {maxsize!r}")
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
        if not tombstone_ttl > 0:
            raise ValueError(f"tombstone_ttl must be positive, not {tombstone_ttl!r}")
        self.maxsize = maxsize
        self.ttl = ttl
        self.timer = timer
        self.tombstones = tombstones
        self.tombstone_ttl = tombstone_ttl
        self.ordering = ordering
        self.on_evict = on_evict
        self.evictions = 0
        # Public so a node can inline its hit path; never rebound, only mutated.
        self.data: OrderedDict[str, tuple[Any, int, float]] = OrderedDict()
        self.suspects: dict[str, tuple[Any, int, float]] = {}
        self._floors: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def items(self) -> Iterator[tuple[str, Any, int]]:
        """Yield ``(key, value, version)`` from least to most recently used."""
        for key, (value, version, _) in list(self.data.items()):
            yield key, value, version

    def get(self, key: str) -> tuple[Any, int] | None:
        """Return ``(value, version)`` and mark it used, or None on a miss."""
        entry = self.data.get(key)
        if entry is None or entry[2] <= self.timer():
            if entry is not None:
                self._drop(key)
            return None
        self.data.move_to_end(key)
        return entry[0], entry[1]

    def floor(self, key: str) -> int:
        """The minimum version a fill of ``key`` must carry (0 when none is known)."""
        floor = self._floors.get(key)
        if floor is None:
            return 0
        if floor[1] <= self.timer():
            del self._floors[key]
            return 0
        return floor[0]

    def known_version(self, key: str) -> int:
        """The newest version this store has seen for ``key``."""
        entry = self.data.get(key)
        return max(self.floor(key), 0 if entry is None else entry[1])

    def fill(self, key: str, value: Any, version: int, expires: float = _FOREVER) -> bool:
        """Store a value read at ``version``, unless something newer is known.

        ``expires`` (on this store's timer) can end the entry before the ttl does: when the
        value itself expires in Redis.
        """
        if self.tombstones and version < self.floor(key):
            return False
        current = self.data.get(key)
        if self.ordering and current is not None and current[1] > version:
            return False
        self._store(key, value, version, expires)
        return True

    def update(self, key: str, value: Any, version: int) -> bool:
        """Replace a held (even suspect) value with a newer one; else only raise the floor."""
        if self.ordering and version <= self.known_version(key):
            return False
        suspect = self.suspects.get(key)
        if self.ordering and suspect is not None and version <= suspect[1]:
            return False  # older than what it may replace: repair decides
        self._raise_floor(key, version)
        if key in self.data or suspect is not None:
            self._store(key, value, version)
        return True

    def invalidate(self, key: str, version: int) -> bool:
        """Drop ``key`` for a change at ``version``; False if already known."""
        suspect = self.suspects.get(key)
        if suspect is not None and version > suspect[1]:  # an older change: repair decides
            del self.suspects[key]
        if self.ordering and version <= self.known_version(key):
            return False
        self.data.pop(key, None)
        self._raise_floor(key, version)
        return True

    def discard(self, key: str) -> None:
        """Drop ``key``'s entry without learning a version (a write whose outcome is unknown)."""
        self.data.pop(key, None)
        self.suspects.pop(key, None)

    def flush(self, *, forget_floors: bool = False) -> int:
        """Drop every entry and suspect (and the floors too after a reset); return how many."""
        dropped = len(self.data) + len(self.suspects)
        self.data.clear()
        self.suspects.clear()
        if forget_floors:
            self._floors.clear()
        return dropped

    def suspect(self, since: int = 0) -> int:
        """Stop trusting entries of version ``since`` or newer; return how many became suspect."""
        moved = [key for key, entry in self.data.items() if entry[1] >= since]
        for key in moved:
            self.suspects[key] = self.data.pop(key)
        return len(moved)

    def restore(self) -> int:
        """Trust every suspect again as it is (a replay showed nothing changed it); how many."""
        restored = 0
        for key, entry in self.suspects.items():
            if key not in self.data:  # a newer copy wins (there is none while a node holds)
                self.data[key] = entry
                restored += 1
        self.suspects.clear()
        return restored

    def doubt(self, key: str) -> int:
        """Stop trusting one key's entry and floor (a false message may have set them);
        1 if an entry became suspect, else 0."""
        self._floors.pop(key, None)
        entry = self.data.pop(key, None)
        if entry is None:
            return 0
        self.suspects[key] = entry
        return 1

    def forget_floors(self, since: int = 0) -> None:
        """Forget floors of version ``since`` or newer (they may name versions never issued)."""
        if since <= 0:
            self._floors.clear()
            return
        for key in [key for key, (version, _) in self._floors.items() if version >= since]:
            del self._floors[key]

    def confirm(self, key: str, entry: tuple[Any, int, float], version: int) -> bool:
        """Trust suspect ``entry`` again at the store's ``version``, if it is still the suspect."""
        if self.suspects.get(key) is not entry or (self.tombstones and version < self.floor(key)):
            return False
        del self.suspects[key]
        self.data[key] = (entry[0], version, entry[2])
        self._evict()
        return True

    def refute(self, key: str, entry: tuple[Any, int, float], version: int) -> bool:
        """Drop suspect ``entry``: the store holds something else, at ``version``."""
        if self.suspects.get(key) is not entry:
            return False
        del self.suspects[key]
        self._raise_floor(key, version)
        return True

    def _store(self, key: str, value: Any, version: int, expires: float = _FOREVER) -> None:
        """Insert or replace, then evict the least recently used beyond ``maxsize``."""
        if self.ttl is not None:
            expires = min(expires, self.timer() + self.ttl)
        self.suspects.pop(key, None)
        self.data[key] = (value, version, expires)
        self.data.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        """Make room: suspects go first (oldest first), then the least recently used entries."""
        while self.suspects and len(self.data) + len(self.suspects) > self.maxsize:
            del self.suspects[next(iter(self.suspects))]  # never trusted again: no floor
        while len(self.data) > self.maxsize:
            old_key, (_, old_version, _) = self.data.popitem(last=False)
            self.evictions += 1
            self._raise_floor(old_key, old_version)
            if self.on_evict is not None:
                self.on_evict(old_key, old_version)

    def _drop(self, key: str) -> None:
        """Remove an expired entry, keeping its version as a floor."""
        _, version, _ = self.data.pop(key)
        self._raise_floor(key, version)

    def _raise_floor(self, key: str, version: int) -> None:
        """Remember that versions below ``version`` of ``key`` are outdated."""
        if not self.tombstones:
            return
        if version <= self.floor(key):
            return
        self._floors[key] = (version, self.timer() + self.tombstone_ttl)
        self._floors.move_to_end(key)
        while len(self._floors) > self.maxsize:
            self._floors.popitem(last=False)
