"""MemoryStore: the RedisStore scripts' exact semantics in a dict, on the virtual clock.

It mirrors ``cachelab.store`` line for line: versions are the sequence number; the
meta (incarnation and sequence) is created on first use, so after ``restart()`` the
next call starts a new incarnation at seq 0; an absent key reads as ``(None, current
seq)``; a value that outlived its incarnation reads as version 0 of the current one;
a delete or invalidation leaves a version marker that expires after ``marker_ttl``; a
``fill`` is refused when the key holds a value, or changed after the read it names; a
write with a message head publishes ``head + tail``, tagged when there is a signer.
Incarnations are named ``sim-1``, ``sim-2``, ... so runs are reproducible.

With ``stream_maxlen``, every message is also appended to a stream capped at exactly that
many entries (Redis's ``MAXLEN ~`` trims whole nodes: about the cap), whose ids keep
rising across restarts as Redis's time-based ids do. A simulated reader reads it from its
last id (``stream_after``), as ``XREAD`` does: a reader that comes back replays what it
missed, and one whose last id was trimmed away finds the numbers skip.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice

from cachelab import validate
from cachelab.auth import Signer
from cachelab.contract import KeyState, Meta, Reply, Stamp
from cachelab.local import Timer
from cachelab.messages import finish, message_tail

WriteHook = Callable[[str, str, int], None]
"""Called as ``on_write(op, key, seq)`` after a write is applied, before it is published."""
PublishHook = Callable[[bytes], None]
"""Called as ``on_publish(raw)`` for each message published (any channel)."""
CheckHook = Callable[[int], None]
"""Called as ``on_check(keys)`` for each repair round trip, with the number of keys."""

_VALUE_OPS = frozenset({"set", "fill"})
_FOREVER = float("inf")
Record = tuple[bytes | None, int, float, str]  # value (None: a marker), version, expiry, inc
Entry = tuple[int, bytes, float]  # a stream entry: id, message, time appended


def _ignore_write(op: str, key: str, seq: int) -> None:
    """The default write hook."""


def _ignore_publish(raw: bytes) -> None:
    """The default publish hook: nobody subscribes."""


def _ignore_check(keys: int) -> None:
    """The default check hook."""


class MemoryStore:
    """A ``Store`` with no server: one dict of ``key -> (value, version, expiry, inc)``."""

    def __init__(
        self,
        timer: Timer,
        *,
        marker_ttl: float = 3600.0,
        signer: Signer | None = None,
        on_write: WriteHook = _ignore_write,
        on_publish: PublishHook = _ignore_publish,
        on_check: CheckHook = _ignore_check,
        stream_maxlen: int | None = None,
    ) -> None:
        validate.store_options(marker_ttl, stream_maxlen)
        self.timer = timer
        self.marker_ttl = marker_ttl
        self.signer = signer
        self.on_write = on_write
        self.on_publish = on_publish
        self.on_check = on_check
        self._data: dict[str, Record] = {}
        self._inc = ""  # "" : the meta is absent; the next call creates it
        self._seq = 0
        self._incarnations = 0
        self.stream_maxlen = stream_maxlen
        self._stream: deque[Entry] = deque()
        self._last_id = 0  # the last stream id given; it survives a restart, as time does

    def fence(self) -> None:
        """Nothing to wait for: the simulated network delivers each message itself."""

    def meta(self) -> Meta:
        """The current incarnation and sequence number (created when absent)."""
        if not self._inc:
            self._incarnations += 1
            self._inc, self._seq = f"sim-{self._incarnations}", 0
        return Meta(self._inc, self._seq)

    def read(self, key: str) -> Reply:
        """Read ``key``; absent keys read as ``(None, current seq)``."""
        inc, seq = self.meta()
        entry = self._data.get(key)
        if entry is None or entry[0] is None:
            return Reply(None, seq, inc, seq)
        return Reply(entry[0], self._adopt(key, entry), inc, seq)

    def write(self, op: str, key: str, encoded: str, head: str | None) -> Stamp:
        """Apply ``set``/``del``/``inv`` and publish ``head`` + tail if given."""
        return self._apply(op, key, encoded, head)

    def fill(self, key: str, encoded: str, since: Reply, head: str | None) -> Stamp:
        """Store a loaded value unless the key changed after ``since``; seq 0 when refused."""
        inc, _ = self.meta()
        entry = self._live(key)
        changed = entry is not None and entry[3] == inc and entry[1] > since.version
        if since.inc != inc or (entry is not None and entry[0] is not None) or changed:
            return Stamp(0, inc)
        return self._apply("fill", key, encoded, head)

    def check(self, keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
        """Version and value digest of each key, with the meta."""
        meta = self.meta()
        self.on_check(len(keys))
        return meta, [self._check(key, meta.seq) for key in keys]

    def mark(self, channel: str, head: str | None) -> Meta:
        """Publish a marker (``head`` + the current tail); return the meta."""
        meta = self.meta()
        if head:
            self._publish(finish(head + message_tail(meta.inc, meta.seq), self.signer))
        return meta

    def restart(self) -> list[str]:
        """Lose every key and the meta, like a Redis restart without persistence.

        Returns the keys that held a value (markers are not values), in insertion order.
        """
        lost = [key for key, entry in self._data.items() if entry[0] is not None]
        self._data.clear()
        self._stream.clear()
        self._inc, self._seq = "", 0
        return lost

    def replace(self, key: str, encoded: str) -> None:
        """Replace a value in place, as a writer that knows nothing of cachelab would: no
        sequence number, no message; the version stays (0 for a key with none)."""
        inc, _ = self.meta()
        entry = self._data.get(key)
        version = 0 if entry is None or entry[0] is None else entry[1]
        self._data[key] = (encoded.encode(), version, _FOREVER, inc if entry is None else entry[3])

    def forget_meta(self) -> None:
        """Lose the meta alone, as an evicting ``maxmemory`` policy may: values outlive it."""
        self._inc, self._seq = "", 0

    def stream_end(self) -> int:
        """The id of the stream's last entry (0: none yet): where a new reader starts."""
        return self._last_id

    def stream_after(self, after: int, upto: int) -> list[Entry]:
        """The entries with ids in ``(after, upto]`` still in the stream, oldest first."""
        stream = self._stream
        if not stream or upto <= after:
            return []
        first = stream[0][0]  # ids in the stream are consecutive
        start = max(after + 1 - first, 0)
        return list(islice(stream, start, max(upto + 1 - first, start)))

    def version(self, key: str) -> int:
        """The version of ``key``'s value or live marker (0 when there is none)."""
        entry = self._live(key)
        return 0 if entry is None else entry[1]

    def __len__(self) -> int:
        return len(self._data)

    def _check(self, key: str, seq: int) -> KeyState:
        """One key's repair answer."""
        entry = self._data.get(key)
        if entry is None or entry[0] is None:
            return seq, ""
        return self._adopt(key, entry), hashlib.sha1(entry[0]).hexdigest()

    def _adopt(self, key: str, entry: Record) -> int:
        """A value's version in the current incarnation (0 if it outlived its own)."""
        if entry[3] == self._inc:
            return entry[1]
        self._data[key] = (entry[0], 0, entry[2], self._inc)
        return 0

    def _live(self, key: str) -> Record | None:
        """The entry of ``key``, dropping a marker whose PEXPIRE has passed."""
        entry = self._data.get(key)
        if entry is not None and entry[2] <= self.timer():
            del self._data[key]
            return None
        return entry

    def _apply(self, op: str, key: str, encoded: str, head: str | None) -> Stamp:
        """The write script: take the next seq, store value or marker, publish."""
        inc, _ = self.meta()
        self._seq += 1
        seq = self._seq
        if op in _VALUE_OPS:
            self._data[key] = (encoded.encode(), seq, _FOREVER, inc)
        else:
            self._data[key] = (None, seq, self.timer() + self.marker_ttl, inc)
        self.on_write(op, key, seq)
        if head:
            self._publish(finish(head + message_tail(inc, seq), self.signer))
        return Stamp(seq, inc)

    def _publish(self, raw: bytes) -> None:
        """Send a message: append it to the stream, if there is one, then tell the hook."""
        if self.stream_maxlen is not None:
            self._last_id += 1
            self._stream.append((self._last_id, raw, self.timer()))
            while len(self._stream) > self.stream_maxlen:
                self._stream.popleft()
        self.on_publish(raw)
