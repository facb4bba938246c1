"""Recovery, the part of the core that follows the link: what a node stops trusting when
messages may have been lost or its store started again, and how it trusts again.

A base class of ``NodeCore`` (core.py): it reads and changes the core's state, named
below, and nothing else. Suspects are repaired in batches against the store's digests;
on the stream transport, what a blip held is trusted again once the replay shows no gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

from cachelab.contract import KeyState, Meta
from cachelab.link import Link, move
from cachelab.local import LocalStore
from cachelab.sequence import Sequencer

Entry = tuple[Any, int, float]


@dataclass(frozen=True)
class Switches:
    """The safeguards a node runs; each can be switched off to show what it prevents."""

    fill_guard: bool = True
    gap_detection: bool = True
    reconnect_flush: bool = True
    negative_cache: bool = True
    repair: bool = True


@dataclass(frozen=True)
class RepairBatch:
    """Suspects taken for one round trip, with the epoch they were taken in."""

    epoch: int
    items: list[tuple[str, Entry]]

    @property
    def keys(self) -> list[str]:
        """The keys to check."""
        return [key for key, _ in self.items]


class Recovery:
    """The link's steps and the repair of suspects (state: the core's, annotated here)."""

    counts: dict[str, int]
    local: LocalStore
    seq: Sequencer
    switches: Switches
    epoch: int
    link: Link
    streamed: bool
    numbered: bool
    questions: bool  # it questions messages (gap detection on a subscribing node)
    held: bool  # every suspect waits for the stream's replay, none for repair
    replaying: int | None  # the store's seq at a stream reconnect
    asking: bool  # a questioned message awaits the store's answer

    def _emit(self, kind: str, key: str, version: int) -> None:
        raise NotImplementedError  # the core queues events

    @property
    def coherent(self) -> bool:
        """Whether the node trusts its local cache: its link is live (or it never distrusts)."""
        link = self.link
        if link is Link.LIVE:
            return True
        naive = not self.switches.reconnect_flush
        return naive and (link is Link.DOWN or link is Link.REPLAYING)

    @property
    def closed(self) -> bool:
        """Whether the node was closed (it reads through Redis only)."""
        return self.link is Link.CLOSED

    def _reset(self, meta: Meta) -> None:
        """The store's counter started again: no version we know means anything now."""
        self.counts["resets"] += 1
        self._emit("reset", "", meta.seq)
        self.seq.rebase(meta)
        self.local.forget_floors()
        self._recover()

    def _gap(self, seq: int) -> None:
        """Messages were lost: any entry may be stale."""
        self.counts["gaps"] += 1
        self._emit("gap", "", seq)
        self._recover()

    def _doubt(self, key: str | None, seq: int) -> None:
        """One message numbered ``seq`` may have been false: recheck the one key it named.
        A number older than the log's is long past its genuine twin: nothing to recheck."""
        if key is None:
            return
        if not self.switches.repair:
            self.local.discard(key)
            return
        self.held = False  # a suspect for repair to check
        moved = self.local.doubt(key)
        self.counts["suspected"] += moved
        if moved:
            self._emit("suspect", key, seq)

    def _distrust(self, since: int) -> None:
        """Versions from ``since`` on may be forged, or lost (an older dump restored in
        place): forget those floors, recheck those entries, and let no load in flight fill,
        since its reply may carry one of them and would then outrank every later write."""
        self.epoch += 1
        self.local.forget_floors(since)
        if self.switches.repair:
            self._suspect(since)
        else:
            self._flush()

    def _recover(self) -> None:
        """Stop trusting every entry (suspect or flush) and every load in flight."""
        self.epoch += 1
        self.seq.doubted = 0  # every entry is rechecked: no gap left to decide
        if self.switches.repair:
            self._suspect(0)
        else:
            self._flush()

    def _suspect(self, since: int) -> None:
        """Move entries of version ``since`` or newer out of reach of the hit path."""
        self.held = False  # these are for repair to check
        moved = self.local.suspect(since)
        self.counts["suspected"] += moved
        if moved:
            self._emit("suspect", "", since)  # entries of this version or newer

    def _flush(self) -> None:
        """Drop every entry (the cold alternative to repair)."""
        self.local.flush()
        self.counts["flushes"] += 1
        self._emit("flush", "", self.seq.last)

    def flush(self) -> None:
        """Drop every entry and reject every fill in flight."""
        self.epoch += 1
        self._flush()

    def disconnected(self) -> None:
        """The subscription is down: stop trusting and filling until it is back."""
        self.link = move(self.link, "disconnected")
        if self.closed:
            return
        self.counts["disconnects"] += 1
        self._emit("disconnect", "", self.seq.last)
        if not self.switches.reconnect_flush:
            return
        if self.streamed:
            self._hold()
        else:
            self._recover()

    def _hold(self) -> None:
        """Stream: serve nothing held until the replay vouches for it (no flush, no repair).

        Suspects already waiting for repair, or a questioned message whose answer never
        came (lost with the connection), leave repair in charge of everything.
        """
        held = (self.held or not self.local.suspects) and not self.asking
        self.asking = False
        self.epoch += 1
        self._suspect(0)
        self.held = held

    def subscribed(self, first: bool, meta: Meta) -> None:
        """(Re)subscribed, and the store's meta read after the subscription took effect
        (on the stream transport: read with the position the bus reads from)."""
        if self.numbered:  # no counter in the store: the node's own numbering goes on
            meta = Meta(self.seq.inc, self.seq.last)
        event = "subscribed" if first else "resumed" if self.streamed else "resubscribed"
        self.link = move(self.link, event)
        if self.closed:
            return
        if first:
            self.seq.rebase(meta)
        elif self.streamed:
            self._resumed(meta)  # live again once the replay has caught up (``replayed``)
        else:
            self._resubscribed(meta)
            self.seq.rebase(meta)

    def _resumed(self, meta: Meta) -> None:
        """Stream: reconnected; the bus replays from its last entry id, then ``replayed``."""
        self.counts["reconnects"] += 1
        self._emit("reconnect", "", meta.seq)
        self.replaying = meta.seq
        if not (self.switches.reconnect_flush or self.questions):
            return
        if meta.inc != self.seq.inc:
            self._reset(meta)
        elif meta.seq < self.seq.last:  # the same incarnation went back: writes were lost
            self.local.forget_floors(meta.seq + 1)
            self._gap(meta.seq)
            self.seq.rebase(meta)

    def replayed(self) -> None:
        """Stream: every entry up to where the stream stood at the reconnect was handled.

        Numbers the store had issued by then that no entry carried (written without a
        message, or trimmed) are a gap: repair. Otherwise what the blip held is trusted
        again as it is: the replay applied every change it missed.
        """
        self.link = move(self.link, "replayed")
        if self.closed:
            return
        until, self.replaying = self.replaying, None
        if until is not None:
            self.counts["replays"] += 1
            if self.questions and self.seq.last < until:
                self._gap(until)
                self.seq.last = until
                self.seq.received = max(self.seq.received, until)
        if self.held and self.local.suspects:
            restored = self.local.restore()
            self.counts["restored"] += restored
            self._emit("restore", "", self.seq.last)
        self.held = False

    def _resubscribed(self, meta: Meta) -> None:
        """After a reconnect: messages may have been lost, or the store may be another one."""
        self.counts["reconnects"] += 1
        self._emit("reconnect", "", meta.seq)
        if not (self.switches.reconnect_flush or self.questions):
            return  # the naive node trusts on: what the lab shows going wrong
        if meta.inc != self.seq.inc:
            self._reset(meta)
        elif meta.seq < self.seq.last:  # the same incarnation went back: writes were lost
            self.local.forget_floors(meta.seq + 1)
            self._gap(meta.seq)
        elif self.switches.reconnect_flush:
            self._recover()
        elif meta.seq > self.seq.last:
            self._gap(meta.seq)

    def repair_batch(self, size: int) -> RepairBatch | None:
        """Suspects to check in one round trip, or None (nothing suspect, or not subscribed)."""
        if not self.coherent or not self.local.suspects:
            return None
        return RepairBatch(self.epoch, list(islice(self.local.suspects.items(), size)))

    def repaired(
        self, batch: RepairBatch, digests: list[str], meta: Meta, checks: list[KeyState]
    ) -> None:
        """Keep the suspects the store confirms by digest, drop the others."""
        self.counts["repair_checks"] += 1
        if self.questions and meta.inc != self.seq.inc:
            self._reset(meta)
            return
        if batch.epoch != self.epoch:
            return  # suspicion came again meanwhile: these answers may predate it
        for (key, entry), digest, (version, stored) in zip(
            batch.items, digests, checks, strict=True
        ):
            if digest == stored and self.local.confirm(key, entry, version):
                self.counts["repair_kept"] += 1
                self._emit("repair_keep", key, version)
            elif self.local.refute(key, entry, version):
                self.counts["repair_dropped"] += 1
                self._emit("repair_drop", key, version)
