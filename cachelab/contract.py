"""The store's contract: what a node needs from the shared store, and what it gets back.

No I/O here, nor an import of a client: the core depends on this module alone, so the rule
"the core does no I/O" can be read off its imports. ``store.py`` implements the contract on
Redis (the Lua scripts); ``sim/store.py`` in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from cachelab.errors import CachelabError


class Meta(NamedTuple):
    """The store's incarnation and latest sequence number."""

    inc: str
    seq: int


class Reply(NamedTuple):
    """A read: the encoded value (None when absent) and its version, with the store's meta;
    ``ttl``, the seconds the key has left in the store when the store says (None: no end)."""

    value: bytes | None
    version: int
    inc: str
    seq: int
    ttl: float | None = None


class Stamp(NamedTuple):
    """What a write was given: its sequence number (0: a refused fill) and incarnation."""

    seq: int
    inc: str


class Position(NamedTuple):
    """Where a stream reader starts: the store's meta and the stream's last entry id, read
    together (every entry up to ``last_id`` has a number up to ``meta.seq``)."""

    meta: Meta
    last_id: str


class TransportMismatch(CachelabError, ValueError):
    """The namespace and this node disagree about the transport (pub/sub, or a stream cap)."""


class StripeMismatch(CachelabError, ValueError):
    """The namespace and this node disagree about its stripes (see ``cachelab.stripes``)."""


KeyState = tuple[int, str]
"""One key's state in the store, as ``Store.check`` answers: its version and the SHA-1 of
its encoded value ("" if absent)."""

Check = KeyState  # the name before 0.2 ("check" also names the checker): kept one version


class Store(Protocol):
    """What a node needs from the shared store: six operations, all atomic."""

    def meta(self) -> Meta:
        """The current incarnation and sequence number (created when absent)."""
        ...

    def fence(self) -> None:
        """Return once every message of this client's earlier writes was sent (strict)."""
        ...

    def read(self, key: str) -> Reply:
        """Read ``key``; absent keys read as ``(None, current seq)``."""
        ...

    def write(self, op: str, key: str, encoded: str, head: str | None) -> Stamp:
        """Apply ``set``/``del``/``inv`` and publish ``head`` + tail if given."""
        ...

    def fill(self, key: str, encoded: str, since: Reply, head: str | None) -> Stamp:
        """Store ``encoded`` only if ``key`` holds no value and did not change since the
        read ``since``; a refusal has ``seq`` 0."""
        ...

    def check(self, keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
        """Version and value digest of each key, for repair, with the store's meta."""
        ...

    def mark(self, channel: str, head: str | None) -> Meta:
        """Publish a marker (``head`` + the current tail) on ``channel``; return the meta."""
        ...
