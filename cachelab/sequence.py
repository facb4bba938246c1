"""Which messages can be trusted: one stripe's incarnation and sequence, as a node sees them.

Every write takes the next sequence number of its stripe, and Redis delivers one
subscription's messages in publish order. So on an ordered subscription a message is
trusted without a question only when it carries the known incarnation, is newer than
the last message received, and skips no number. Anything else is answered against the
store's own (incarnation, seq), read by the caller:

- another incarnation: the counter was reset (FLUSHALL, eviction, a restart without
  persistence), or the message is forged;
- a jump: messages were lost, or the message claims a number the store never issued;
- a number already received: a forgery (one of the two messages is false), unless the
  store itself is behind what was received: its counter went back in place (an older
  dump restored without a restart), and the numbers are issued again.

A namespace has one stripe today; a later version gives each stripe its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from cachelab.contract import Meta
from cachelab.messages import Message


class Verdict(Enum):
    """What a questioned message (or marker) turned out to be."""

    IN_ORDER = "in order"
    RESET = "reset"  # the store has another incarnation: re-base and repair everything
    GAP = "gap"  # messages were lost: repair everything
    REPLAYED = "replayed"  # a number received twice: repair what may be forged
    ROLLED_BACK = "rolled back"  # the store's counter went back in place: re-base on it
    OVERRUN = "overrun"  # this node accepted numbers the store never issued
    RETIRED = "retired"  # of an incarnation this node has left: genuine, late, outdated
    FORGED = "forged"  # the message itself is impossible: drop it


NUMBERS_KEPT = 4096
"""How many recent numbers a node remembers the key of (``NumberLog``)."""


@dataclass
class NumberLog:
    """The key each recently handled number named. Every number is one write of one key,
    so when numbers are in doubt (one received twice, or past the store's), the entries a
    false or lost message could have touched are those keys alone, not the whole cache."""

    size: int = NUMBERS_KEPT
    keys: dict[int, str] = field(default_factory=dict)

    def add(self, seq: int, key: str) -> None:
        """Number ``seq`` named ``key``."""
        self.keys[seq] = key
        if len(self.keys) > self.size:
            del self.keys[next(iter(self.keys))]  # the oldest: numbers come in order

    def key(self, seq: int) -> str | None:
        """The key number ``seq`` named, if it is recent and was handled."""
        return self.keys.get(seq)


@dataclass
class Sequencer:
    """One stripe's incarnation and sequence numbers, as far as this node has handled them."""

    ordered: bool = True
    inc: str = ""
    last: int = 0  # every number up to here was handled, or is known lost
    received: int = 0  # the newest number received on the current subscription
    retired: tuple[str, ...] = ()  # the last few incarnations this node left
    numbers: NumberLog = field(default_factory=NumberLog)
    doubted: int = 0  # a gap was claimed up to this issued number: the next marker decides

    def rebase(self, meta: Meta) -> None:
        """Start again from the store's meta (a new subscription, or a new incarnation)."""
        if self.inc and meta.inc != self.inc:
            self.retired = (self.inc, *self.retired[:3])
        self.inc, self.last, self.received = meta.inc, meta.seq, 0
        self.numbers.keys.clear()  # the numbers to come may name other keys
        self.doubted = 0

    def trusted(self, msg: Message) -> bool:
        """Whether ``msg`` follows what came before, with no question to ask."""
        return (
            msg.inc == self.inc
            and msg.seq <= self.last + 1
            and (msg.seq > self.received or not self.ordered)
        )

    def accept(self, seq: int, key: str = "") -> None:
        """A message numbered ``seq`` (about ``key``) was handled."""
        self.last = max(self.last, seq)
        self.received = max(self.received, seq)
        if key:
            self.numbers.add(seq, key)
        if self.doubted and self.last >= self.doubted:
            self.doubted = 0  # every number in doubt came, in order: the gap was false

    def doubt(self, upto: int) -> None:
        """A message claimed numbers up to ``upto`` this node has not received (a gap, or a
        forgery that overtook them): wait for them, or for a marker to show them lost."""
        self.doubted = max(self.doubted, upto)

    def covered(self, msg: Message) -> bool:
        """A jump within a gap already in doubt: the next marker decides it, no question."""
        jump = self.last + 1 < msg.seq <= self.doubted
        return bool(self.doubted) and msg.inc == self.inc and jump

    def message_verdict(self, msg: Message, meta: Meta) -> Verdict:
        """Judge a message that was not ``trusted``, knowing the store's ``meta``."""
        if meta.inc != self.inc:
            return Verdict.RESET
        if msg.inc != self.inc:
            return Verdict.RETIRED if msg.inc in self.retired else Verdict.FORGED
        if self.ordered and msg.seq <= self.received:
            # A replay cannot move the store's counter back; a restored dump does.
            return Verdict.ROLLED_BACK if meta.seq < self.received else Verdict.REPLAYED
        if msg.seq > self.last + 1:
            return Verdict.GAP if msg.seq <= meta.seq else Verdict.FORGED
        return Verdict.IN_ORDER

    def marker_verdict(self, marker: Message, meta: Meta) -> Verdict:
        """Judge a marker, which carries the store's (incarnation, seq) when it was sent.

        Every message numbered up to the marker's ``seq`` was published before it, so
        on an ordered subscription it arrived before the marker (or was lost).
        """
        if meta.inc != self.inc:
            return Verdict.RESET
        if marker.inc in self.retired:
            return Verdict.RETIRED
        if marker.inc != self.inc or marker.seq > meta.seq:
            return Verdict.FORGED
        if marker.seq > self.last:
            return Verdict.GAP
        if marker.seq < self.last:  # numbers past the marker's came before it: not genuine
            return Verdict.OVERRUN
        return Verdict.IN_ORDER

    def marker_trusted(self, marker: Message) -> bool:
        """Whether a marker agrees with this node's view, with no question to ask."""
        return marker.inc == self.inc and marker.seq == self.last
