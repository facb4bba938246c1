"""MemoryStore: the RedisStore scripts' exact semantics in a dict, on the virtual clock.

It mirrors ``cachelab.store`` line for line: versions are the global sequence
number; an absent key reads as ``(None, current seq)``; a delete or invalidation
leaves a version marker that expires after ``marker_ttl``; a ``fill`` is refused
when the key holds a value or was written after ``since``; a write with a message
head publishes ``head + str(seq) + "}"``. ``restart()`` loses everything, as a
Redis restart without persistence does, and names the keys whose values it lost.
"""

from __future__ import annotations

from collections.abc import Callable

from cachelab.local import Timer

WriteHook = Callable[[str, str, int], None]
"""Called as ``on_write(op, key, seq)`` after a write is applied, before it is published."""
PublishHook = Callable[[bytes], None]
"""Called as ``on_publish(raw)`` for each message published on the namespace's channel."""

_VALUE_OPS = frozenset({"set", "fill"})
_FOREVER = float("inf")


def _ignore_write(op: str, key: str, seq: int) -> None:
    """The default write hook."""


def _ignore_publish(raw: bytes) -> None:
    """The default publish hook: nobody subscribes."""


class MemoryStore:
    """A ``Store`` with no server: one dict of ``key -> (value, version, marker expiry)``."""

    def __init__(
        self,
        timer: Timer,
        *,
        marker_ttl: float = 3600.0,
        on_write: WriteHook = _ignore_write,
        on_publish: PublishHook = _ignore_publish,
    ) -> None:
        if not marker_ttl > 0:
            raise ValueError(f"marker_ttl must be positive, not {marker_ttl!r}")
        self.timer = timer
        self.marker_ttl = marker_ttl
        self.on_write = on_write
        self.on_publish = on_publish
        self._data: dict[str, tuple[bytes | None, int, float]] = {}
        self._seq = 0

    def read(self, key: str) -> tuple[bytes | None, int]:
        """Return ``(encoded value, version)``, or ``(None, current seq)`` when absent."""
        entry = self._data.get(key)
        if entry is not None and entry[0] is not None:
            return entry[0], entry[1]
        return None, self._seq

    def write(self, op: str, key: str, encoded: str, head: str | None) -> int:
        """Apply ``set``/``del``/``inv`` and publish ``head + seq + '}'`` if given."""
        return self._apply(op, key, encoded, head)

    def fill(self, key: str, encoded: str, since: int, head: str | None) -> int:
        """Store a loaded value unless the key changed after ``since``; 0 when refused."""
        entry = self._live(key)
        if entry is not None and (entry[0] is not None or entry[1] > since):
            return 0
        return self._apply("fill", key, encoded, head)

    def seq(self) -> int:
        """The latest sequence number handed out."""
        return self._seq

    def publish(self, raw: bytes) -> None:
        """Publish a raw message on the namespace's channel."""
        self.on_publish(raw)

    def restart(self) -> list[str]:
        """Lose every key and the sequence number, like a Redis restart without persistence.

        Returns the keys that held a value (markers are not values), in insertion order.
        """
        lost = [key for key, entry in self._data.items() if entry[0] is not None]
        self._data.clear()
        self._seq = 0
        return lost

    def version(self, key: str) -> int:
        """The version of ``key``'s value or live marker (0 when there is none)."""
        entry = self._live(key)
        return 0 if entry is None else entry[1]

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, key: str) -> tuple[bytes | None, int, float] | None:
        """The entry of ``key``, dropping a marker whose PEXPIRE has passed."""
        entry = self._data.get(key)
        if entry is not None and entry[2] <= self.timer():
            del self._data[key]
            return None
        return entry

    def _apply(self, op: str, key: str, encoded: str, head: str | None) -> int:
        """The write script: take the next seq, store value or marker, publish."""
        self._seq += 1
        seq = self._seq
        if op in _VALUE_OPS:
            self._data[key] = (encoded.encode(), seq, _FOREVER)
        else:
            self._data[key] = (None, seq, self.timer() + self.marker_ttl)
        self.on_write(op, key, seq)
        if head:
            self.on_publish((head + str(seq) + "}").encode())
        return seq
