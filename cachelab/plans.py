"""The protocol's order, written once: each operation is a plan over the core.

A plan is a generator. It changes the core's state, then yields what must happen next as
a value: a store call, a call of the user's loader, or a wait for another load of the
same key. The driver performs the effect and sends its result back in, or throws its
exception in, as h11 is told of a failed send (``send_failed``): a plan's ``except``
decides what a failed round trip leaves trusted. No plan touches a lock, a socket or a
clock other than the core's injected timer.

Drivers: the threaded one (driver.py) runs a plan under its lock between two effects and
performs each effect outside it; the asyncio one (async_driver.py) awaits each effect;
the simulator drives the phase plans (``load``, ``load_external``, ``fill``) with
virtual time between them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from cachelab.contract import Meta, Stamp
from cachelab.core import NodeCore, Ticket
from cachelab.messages import ABSENT, NO_VALUE, Message, fits, message_head

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoreCall:
    """Call ``Store.<method>(*args)``; the plan receives what it returns. ``ticket`` is the
    load it is for, if any (the simulator keeps its books by it)."""

    method: str
    args: tuple[Any, ...] = ()
    ticket: Ticket | None = None


@dataclass(frozen=True, slots=True)
class LoaderCall:
    """Run the user's ``loader`` for ``ticket`` (its value is what the plan receives)."""

    ticket: Ticket
    loader: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Join:
    """Wait until ``ticket`` settles; the plan receives True, or False when its leader was
    cancelled (not the waiter): then the waiter looks again."""

    ticket: Ticket


@dataclass(frozen=True, slots=True)
class Compute:
    """Run ``fn(*args)`` outside any lock: decoding, encoding or hashing values, work in
    proportion to their size that must not hold up the node; the plan receives the result."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]


Effect = StoreCall | LoaderCall | Join | Compute
Plan = Generator[Effect, Any, T]
Read = tuple[Any, int, str, bool]  # (value, version, incarnation, hit)


def write_head(carries_value: bool, prefix: str, op: str, key: str, encoded: str) -> str:
    """The message a write publishes: every strategy tells the listeners.

    The value rides along for the ``update`` strategy when the message stays within
    the size every peer accepts; otherwise peers drop the key and reload it.
    """
    if op == "set" and carries_value:
        head = message_head(prefix, op, key, encoded)
        if fits(head):
            return head
    return message_head(prefix, op, key, None)


def plain(call: Callable[[], T]) -> Plan[T]:
    """A plan of one core call and no effect."""
    yield from ()  # a generator with nothing to yield
    return call()


def flight_inc(ticket: Ticket) -> str:
    """The incarnation of a ticket's version."""
    return "" if ticket.reply is None else ticket.reply.inc


class Plans:
    """Every operation of one node, as plans over its core."""

    def __init__(self, core: NodeCore, prefix: str, repair_size: int) -> None:
        self.core = core
        self.codec = core.strategy.codec
        self.prefix = prefix
        self.repair_size = repair_size
        self.fence = False  # strict=True: a write ends with the store's fence

    # -- reads -------------------------------------------------------------------

    def read(
        self, key: str, loader: Callable[..., Any] | None, owner: int, fresh: bool = False
    ) -> Plan[Read]:
        """A read past the inlined hit: the local copy, else one load per node. A ``fresh``
        read (strict=True, with a message maybe unread) trusts neither the local copy nor
        a load begun before it: it reads the store itself."""
        core = self.core
        hit = None if fresh else core.lookup(key)
        if hit is not None and not (loader is not None and hit[0] is ABSENT):
            return hit[0], hit[1], core.seq.inc, True
        ticket = yield from self.miss(key, loader, owner, join=not fresh)
        if loader is not None and ticket.value is ABSENT:  # joined a plain get()
            ticket = yield from self.miss(key, loader, owner, join=False)
        return ticket.value, ticket.version, flight_inc(ticket), False

    def miss(
        self, key: str, loader: Callable[..., Any] | None, owner: int, join: bool = True
    ) -> Plan[Ticket]:
        """Load ``key`` once per node however many callers miss it together, then fill."""
        core = self.core
        while join:
            leader = core.joinable(key, owner, loader is not None)
            if leader is None:
                break
            leader.waiters += 1
            if (yield Join(leader)):
                if leader.error is not None:
                    raise leader.error
                return leader
        ticket = core.open(key, True, owner)
        try:
            yield from self._load(ticket)
            if loader is not None and ticket.value is ABSENT:
                yield from self._load_external(ticket, loader)
        except BaseException as exc:
            core.failed(ticket, exc)
            raise
        core.guard_fill(ticket)
        return ticket

    def load(self, key: str, owner: int) -> Plan[Ticket]:
        """Phase 2 alone: a fill-guard ticket, then the store's read (``fill`` fills)."""
        ticket = self.core.open(key, True, owner)
        try:
            yield from self._load(ticket)
        except BaseException as exc:
            self.core.failed(ticket, exc)
            raise
        return ticket

    def load_external(self, ticket: Ticket, loader: Callable[..., Any]) -> Plan[Any]:
        """Phase 2b alone: store the loader's value unless the key changed since ``load``."""
        try:
            yield from self._load_external(ticket, loader)
        except BaseException as exc:
            self.core.failed(ticket, exc)
            raise
        return ticket.value

    def fill(self, ticket: Ticket) -> Plan[Any]:
        """Phase 3 alone: the fill guard decides; the ticket's value."""
        yield from ()  # no effect
        self.core.guard_fill(ticket)
        return ticket.value

    def _load(self, ticket: Ticket) -> Plan[None]:
        """Read the store into the ticket; a value the codec refuses fails the load."""
        sent = self.core.timer()
        reply = yield StoreCall("read", (ticket.key,), ticket)
        value = ABSENT
        if reply.value is not None:
            value = yield Compute(self.codec.decode, (reply.value,))
        self.core.loaded(ticket, reply, value, sent)

    def _load_external(self, ticket: Ticket, loader: Callable[..., Any]) -> Plan[None]:
        """Cache-aside: call the loader, then store its value unless the key changed."""
        core = self.core
        start = core.timer() if core.recording else 0.0
        value = yield LoaderCall(ticket, loader)
        encoded, own = yield Compute(self._stored, (value,))
        assert ticket.reply is not None
        head = self._head("set", ticket.key, encoded)
        try:
            stamp = yield StoreCall("fill", (ticket.key, encoded, ticket.reply, head))
        except BaseException as exc:  # it may have run: nothing of the key stays trusted
            core.write_failed(ticket, exc)
            raise
        if core.stored(ticket, own, stamp):
            core.record("write", ticket.key, start, stamp.seq, False, stamp.inc)

    # -- writes ------------------------------------------------------------------

    def write(self, op: str, key: str, value: Any, owner: int) -> Plan[Stamp]:
        """A set (``value``), delete or invalidation. The value is encoded now, by the
        caller, before any lock; the plan runs the script, then fills the writer's own cache
        through the guard, and trusts nothing of the key if the script failed."""
        encoded, keep = self._written(op, value)
        return self._write(op, key, encoded, keep, owner)

    def _write(self, op: str, key: str, encoded: Any, keep: Any, owner: int) -> Plan[Stamp]:
        """The write's plan, its value encoded."""
        core = self.core
        head = self._head(op, key, encoded)
        start = core.timer() if core.recording else 0.0
        ticket = core.open(key, False, owner)
        try:
            stamp = yield StoreCall("write", (op, key, encoded, head))
        except BaseException as exc:  # it may have run
            core.write_failed(ticket, exc)
            raise
        stamp = core.wrote(ticket, keep, stamp)
        if self.fence:
            try:
                yield StoreCall("fence")
            except Exception:  # the write took effect and peers were told: not a failure
                core.counts["fences_failed"] += 1
        core.record(_RECORD_AS[op], key, start, stamp.seq, False, stamp.inc)
        return stamp

    def _written(self, op: str, value: Any) -> tuple[Any, Any]:
        """What a write stores, and what the writer keeps: a set's private copy, a delete's
        cached absence, nothing for an invalidation (nor for a node that keeps no writes)."""
        if op == "set":
            encoded, keep = self._stored(value)
        else:
            encoded, keep = "", ABSENT if op == "del" else NO_VALUE
        return encoded, keep if self.core.strategy.keeps_writes else NO_VALUE

    def _stored(self, value: Any) -> tuple[Any, Any]:
        """What the store holds for ``value``, and the node's own copy of it."""
        encoded = self.codec.encode(value)
        return encoded, self.codec.own_copy(value, encoded)

    def _head(self, op: str, key: str, encoded: Any) -> str:
        """The message a write publishes."""
        return write_head(self.core.strategy.carries_value, self.prefix, op, key, encoded)

    # -- the subscription ----------------------------------------------------------

    def message(self, msg: Message) -> Plan[None]:
        """Apply one decoded message, asking the store when the sequence calls for it."""
        if self.core.handle(msg):
            meta = yield StoreCall("meta")
            self.core.answer(msg, meta)
        if self.core.local.suspects:
            yield from self.repair()

    def subscribed(self, first: bool, meta: Meta | None) -> Plan[None]:
        """(Re)subscribed: re-base on the store's meta (read now unless the bus read it with
        its position), then repair suspects."""
        if meta is None:
            meta = yield StoreCall("meta")
        self.core.subscribed(first, meta)
        yield from self.repair()

    def replayed(self) -> Plan[None]:
        """Stream: the replay caught up; trust what the blip held, or repair a gap."""
        self.core.replayed()
        yield from self.repair()

    def repair(self) -> Plan[None]:
        """Revalidate suspect entries against the store, one batch per round trip."""
        core = self.core
        core.expire_doubt()
        while (batch := core.repair_batch(self.repair_size)) is not None:
            digests = yield Compute(self._digests, (batch.items,))
            meta, checks = yield StoreCall("check", (batch.keys,))
            core.repaired(batch, digests, meta, checks)

    def _digests(self, items: list[tuple[str, Any]]) -> list[str]:
        """What the store's check gives for each held entry's value."""
        return [self.codec.digest(entry[0]) for _, entry in items]

    def mark(self, channel: str, op: str, token: str) -> Plan[None]:
        """Publish a marker (a heartbeat, a sync) carrying the store's (incarnation, seq)."""
        yield StoreCall("mark", (channel, message_head(self.prefix, op, token, None)))


_RECORD_AS = {"set": "write", "del": "delete", "inv": "invalidate"}
