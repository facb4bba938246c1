"""The protocol core: every rule a node follows, with no thread, lock, clock or socket.

The plans (plans.py) call it in the protocol's order and yield what must happen next; a
driver (driver.py, async_driver.py, the simulator) performs it. The core queues what the
driver does after each step, outside any lock: events for the hooks, records for the
recorder, and the tickets whose waiters to wake. Its only clock is the local store's
injected timer.

The rules live here once:

- the fill guard (``guard_fill``): a load overtaken by a newer version, a flush or a
  reset does not fill;
- writes (``wrote``): the writer fills through the same guard, and taints every other
  load of the key in flight, so a later read of its own never joins an older load;
  a write that failed (``write_failed``) leaves nothing of the key trusted;
- messages (``handle``/``answer``): ordering per key, and the Sequencer's questions
  about incarnations, gaps and replays;
- recovery (recovery.py, a base of the core): suspect (or flush) what may be stale, and
  repair suspects in batches; on the stream transport, hold what a blip made unsure and
  trust it again once the replay from the last entry id shows no gap (``replayed``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cachelab.coherence import Strategy
from cachelab.contract import Meta, Reply, Stamp
from cachelab.errors import CachelabError
from cachelab.link import Link, move
from cachelab.local import LocalStore
from cachelab.messages import ABSENT, MARKERS, MAX_SEQ, NO_VALUE, Message, Unauthenticated
from cachelab.recovery import Recovery, RepairBatch, Switches
from cachelab.sequence import Sequencer, Verdict
from cachelab.stats import NodeStats

__all__ = ["Ticket", "NodeCore", "ReentrantLoad", "RepairBatch", "Switches"]
_MAX_UNSURE = 10_000  # a write that never ran leaves its key here: keep the set bounded
NodeEvent = tuple[str, str, int]  # (kind, key, version); key "" for node-wide events
Record = tuple[str, str, float, int, bool, str]  # (op, key, start, version, hit, incarnation)


class ReentrantLoad(CachelabError, RuntimeError):
    """A loader read its own key through the same node: it would wait for itself."""


@dataclass(eq=False, slots=True)
class Ticket:
    """One load in flight: the fill guard's ticket, and the single-flight rendezvous."""

    key: str
    epoch: int
    joinable: bool = True
    seen: int = 0
    value: Any = NO_VALUE
    version: int = 0
    reply: Reply | None = None
    error: BaseException | None = None
    done: bool = False
    waiters: int = 0  # how many wait for it to settle (the driver wakes them)
    owner: int = 0  # the thread (or task) that leads the load
    loading: bool = False  # the user's loader runs for it: waiting on it may wait on oneself
    expires: float = float("inf")  # when the value expires in the store (the node's timer)
    event: Any = None  # the driver's way to wake waiters (a threading.Event, an asyncio.Future)


DOUBT_LIMIT = 1.0
"""Seconds a claimed gap may wait for a marker before it is repaired as a true one."""

_INSIDE: ContextVar[tuple[Ticket, ...]] = ContextVar("cachelab_inside_loaders", default=())
"""The loads whose loader this context runs in. Child tasks (``asyncio.gather``),
``asyncio.to_thread`` and ``contextvars.copy_context()`` inherit it; a plain thread does not."""


class NodeCore(Recovery):
    """One node's protocol state: local store, loads in flight, sequence, counters, events."""

    def __init__(
        self, node_id: str, strategy: Strategy, local: LocalStore, switches: Switches, ordered: bool
    ) -> None:
        self.id = node_id
        self.strategy = strategy
        self.local = local
        self.switches = switches
        self.seq = Sequencer(ordered)
        self.questions = strategy.subscribes and switches.gap_detection
        self.tickets: dict[str, list[Ticket]] = {}
        self.unsure: set[str] = set()  # keys of our writes whose outcome we never heard
        self.epoch = 0
        self.link = Link.IDLE if strategy.subscribes else Link.LIVE
        self.streamed = strategy.transport == "stream"
        self.numbered = not strategy.store_versions  # this node numbers what it hears
        self.timer = local.timer
        self.held = False  # every suspect waits for the stream's replay, none for repair
        self.replaying: int | None = None  # the store's seq at a stream reconnect
        self.asking = False  # a questioned message awaits the store's answer
        self.defer_gaps = False  # a gap a message claims waits for a marker (heartbeats on)
        self.doubt_since = 0.0  # when the claimed gap in doubt began (the node's timer)
        self.synced = ""
        self.hits = self.misses = 0
        self.counts = dict.fromkeys(NodeStats.COUNTERS, 0)
        self.events: list[NodeEvent] = []
        self.recording = False  # the driver has a recorder: plans queue records
        self.records: list[Record] = []
        self.finished: list[Ticket] = []  # settled tickets someone waits on
        local.on_evict = self._evicted

    # -- read path -----------------------------------------------------------

    def lookup(self, key: str) -> tuple[Any, int] | None:
        """Phase 1: the local ``(value, version)``, or None; counted as a hit or a miss."""
        hit = self.local.get(key)
        self.hits += hit is not None
        self.misses += hit is None
        return hit

    def open(self, key: str, joinable: bool, owner: int) -> Ticket:
        """Register a ticket for a load (``joinable``) or write of ``key``.

        A node that numbers its own events stamps a load with the number current now and
        gives a write the next one: anything it hears later is newer than the load.
        """
        ticket = Ticket(key, self.epoch, joinable, owner=owner)
        if self.numbered:
            ticket.version = self.seq.last if joinable else self.number()
        self.tickets.setdefault(key, []).append(ticket)
        return ticket

    def joinable(self, key: str, owner: int | None, loads: bool = False) -> Ticket | None:
        """A load of ``key`` to wait on instead of starting one (single flight).

        ``owner`` is who would wait: waiting on a load it leads, or from inside that load's
        loader (a child task), is refused. A plain read (``loads`` False) never waits on a
        load whose loader runs: that is user code, which may be waiting for the reader (a
        thread it started); the read goes to the store itself.
        """
        inside = _INSIDE.get()
        for ticket in self._open_loads(key):
            if ticket.owner == owner or ticket in inside:
                raise ReentrantLoad(
                    f"the loader of {key!r} reads {key!r} through the same node; "
                    "a loader must get its value elsewhere"
                )
            if loads or not ticket.loading:
                return ticket
        return None

    def pending(self, key: str) -> Ticket | None:
        """The newest untainted load of ``key`` in flight, if any (to inspect, not to join)."""
        return next(self._open_loads(key), None)

    def _open_loads(self, key: str) -> Iterator[Ticket]:
        """The loads of ``key`` one could still join, newest first."""
        for ticket in reversed(self.tickets.get(key, ())):
            if ticket.joinable and not ticket.done and self._untainted(ticket):
                yield ticket

    @contextmanager
    def inside_loader(self, ticket: Ticket) -> Iterator[None]:
        """The code it wraps runs ``ticket``'s loader (awaited included), so that no read
        waits on that load from inside it."""
        ticket.loading = True
        token = _INSIDE.set((*_INSIDE.get(), ticket))
        try:
            yield
        finally:
            _INSIDE.reset(token)
            ticket.loading = False

    def loaded(self, ticket: Ticket, reply: Reply, value: Any, sent: float) -> None:
        """The store answered a load ``reply`` (``value`` decoded) to a request ``sent`` at
        that time; a reply with a ttl ends the entry when the key expires in the store."""
        if self.numbered:  # the load's own stamp is its version
            reply = Reply(reply.value, ticket.version, self.seq.inc, ticket.version, reply.ttl)
        if reply.ttl is not None:
            ticket.expires = sent + reply.ttl
        ticket.reply, ticket.value, ticket.version = reply, value, reply.version
        self._notice(reply.inc, reply.seq)

    def stored(self, ticket: Ticket, value: Any, stamp: Stamp) -> bool:
        """Cache-aside: the conditional fill ran; True if it stored ``value``."""
        ticket.value = value
        self._notice(stamp.inc, stamp.seq)
        if not stamp.seq:  # written since we read: hand back our value, never cache it
            ticket.joinable, ticket.epoch = False, -1
            return False
        ticket.version = stamp.seq
        self.counts["writes"] += 1
        return True

    def guard_fill(self, ticket: Ticket) -> bool:
        """Phase 3, the fill guard: fill unless overtaken, then release the ticket; True if
        it filled."""
        if ticket.done:
            return False
        filled = False
        if ticket.value is ABSENT and not self.switches.negative_cache:
            pass
        elif not self.coherent:
            self.counts["uncached_reads"] += 1
        elif (self.switches.fill_guard and not self._untainted(ticket)) or not self.local.fill(
            ticket.key, ticket.value, ticket.version, ticket.expires
        ):
            self.counts["stale_fills_rejected"] += 1
            self._emit("fill_rejected", ticket.key, ticket.version)
        else:
            self._emit("fill", ticket.key, ticket.version)
            filled = True
        self._finish(ticket)
        return filled

    def failed(self, ticket: Ticket, error: BaseException) -> None:
        """A load failed: release the ticket; whoever waits on it gets ``error``."""
        if not ticket.done:
            ticket.error = error
            self._finish(ticket)

    # -- write path ----------------------------------------------------------

    def wrote(self, ticket: Ticket, value: Any, stamp: Stamp) -> Stamp:
        """The store applied this node's write: taint older loads, then fill through the
        guard; the write's stamp (the node's own number, if it numbers its writes)."""
        if self.numbered:
            stamp = Stamp(ticket.version, self.seq.inc)
        self.counts["writes"] += 1
        self._notice(stamp.inc, stamp.seq)
        self._taint(ticket.key, stamp.seq, spare=ticket)
        ticket.value, ticket.version = value, stamp.seq
        if value is NO_VALUE or (value is ABSENT and not self.switches.negative_cache):
            self.local.invalidate(ticket.key, stamp.seq)
            self._finish(ticket)
        elif not self.guard_fill(ticket):
            # Refused (a newer version overtook the reply): still, this write completed, and
            # a read after it must never see an older version (read your writes).
            self.local.invalidate(ticket.key, stamp.seq)
        return stamp

    def write_failed(self, ticket: Ticket, error: BaseException) -> None:
        """A write ended in an error, yet may have run: trust nothing of its key."""
        self.local.discard(ticket.key)
        if len(self.unsure) < _MAX_UNSURE:
            self.unsure.add(ticket.key)
        self._taint(ticket.key, MAX_SEQ, spare=None)
        self.failed(ticket, error)

    # -- a node that numbers its own events (tracking: no store versions) ------

    def number(self) -> int:
        """The next number of this node's own sequence: a write takes one."""
        self.seq.accept(self.seq.last + 1)
        return self.seq.last

    def invalidated(self, key: str) -> None:
        """The server says ``key`` changed: number it here, then apply it as a message."""
        self._apply(Message("", "inv", key, "", self.number(), inc=self.seq.inc))

    def has_synced(self, nonce: str) -> bool:
        """Whether the sync marker ``nonce`` reached this node and no repair is owed (a
        marker read in a stream's replay may come before the gap's repair)."""
        if not self.strategy.subscribes:
            return True
        doubt = self.seq.doubted
        return self.coherent and self.synced == nonce and not self.local.suspects and not doubt

    def invalidated_all(self, keys: Sequence[str]) -> None:
        """The server says each of ``keys`` changed, in this order."""
        for key in keys:
            self.invalidated(key)

    def marked(self, nonce: str) -> None:
        """A settle marker came back on the subscription: everything before it was handled."""
        self.synced = nonce

    # -- messages ------------------------------------------------------------

    def invalid(self, error: Exception) -> None:
        """A message failed to decode: counted, dropped."""
        forged = isinstance(error, Unauthenticated)
        self.counts["messages_forged" if forged else "messages_invalid"] += 1

    def handle(self, msg: Message) -> bool:
        """Apply one message; True means "answer me with the store's meta" (see ``answer``)."""
        if self.numbered:  # the server's word that the key changed: it carries no number
            self.invalidated(msg.key)
            return False
        if msg.op in MARKERS:
            if self.questions and not self.seq.marker_trusted(msg):
                self.asking = True
                return True
            self._marked(msg)
            return False
        if self.questions and self.seq.covered(msg):
            self._drop(msg)  # a gap in doubt: its marker decides, this message drops a key
            return False
        if self.questions and not self.seq.trusted(msg):
            self.asking = True
            return True
        self._apply(msg)
        return False

    def answer(self, msg: Message, meta: Meta) -> None:
        """Finish ``handle`` for a questioned message, knowing the store's ``meta``."""
        self.asking = False
        if msg.op in MARKERS:
            self._answer_marker(msg, meta)
            return
        verdict = self.seq.message_verdict(msg, meta)
        if verdict is Verdict.RESET:
            self._reset(meta)
            if msg.inc == meta.inc and msg.seq <= meta.seq:
                self._apply(msg)
        elif verdict is Verdict.FORGED:
            self._forged(msg)
        elif verdict is Verdict.RETIRED:
            self._retired(msg)
        elif verdict is Verdict.ROLLED_BACK:
            self._rolled_back(msg)
        elif verdict is Verdict.REPLAYED:  # which of the two is false, nobody can tell
            self._forged(msg)
            self._doubt(self.seq.numbers.key(msg.seq), msg.seq)
            self.seq.last = min(self.seq.last, meta.seq)
            self._drop(msg)
        elif verdict is Verdict.GAP and self.defer_gaps:
            self._defer(msg, meta)
        else:
            if verdict is Verdict.GAP:
                self._gap(msg.seq)
            self._apply(msg)

    def _defer(self, msg: Message, meta: Meta) -> None:
        """A message skipped numbers the store issued. They may be lost, or be on their
        way behind a forgery that overtook them: every one was published before the
        store answered, so a marker sent now comes after them. Until it comes (the bus
        hurries a heartbeat) the message only drops its key; a true loss is repaired then,
        and a false gap costs no repair."""
        self.counts["gaps_deferred"] += 1
        self._emit("doubt", msg.key, msg.seq)
        if not self.seq.doubted:
            self.doubt_since = self.timer()
        self.seq.doubt(meta.seq)
        self._drop(msg)

    def expire_doubt(self) -> None:
        """A gap in doubt for longer than ``DOUBT_LIMIT`` is taken as true: no marker has
        settled it (a store rolled back under the doubt leaves its numbers unreachable)."""
        if self.seq.doubted and self.timer() - self.doubt_since > DOUBT_LIMIT:
            self._gap(self.seq.doubted)

    def _answer_marker(self, marker: Message, meta: Meta) -> None:
        """Finish a questioned marker: the store's (incarnation, seq) against ours."""
        verdict = self.seq.marker_verdict(marker, meta)
        if verdict is Verdict.FORGED:
            self._forged(marker)
            return
        if verdict is Verdict.RETIRED:
            self._retired(marker)
            return
        if verdict is Verdict.RESET:
            self._reset(meta)
        elif verdict is Verdict.GAP:
            self._gap(marker.seq)
        elif verdict is Verdict.OVERRUN:
            self._forged(marker)
            if meta.seq >= self.seq.last:  # the store issued all we handled: a stale marker
                return
            self._distrust(marker.seq + 1)
            self.seq.received = marker.seq  # the numbers past it may be issued again
        if verdict is not Verdict.RESET:
            self.seq.last = marker.seq
            self.seq.received = max(self.seq.received, marker.seq)
        self._marked(marker)

    def _rolled_back(self, msg: Message) -> None:
        """The store's counter went back under the same incarnation (an older dump restored
        in place), so the numbers from ``msg``'s on are issued again: distrust what carries
        them and re-base here, so that the writes that follow are trusted, not questioned."""
        self.counts["gaps"] += 1  # the writes after the dump were lost
        self._emit("gap", "", msg.seq)
        self._distrust(msg.seq)
        self.seq.last = self.seq.received = msg.seq
        self._drop(msg)

    def _marked(self, marker: Message) -> None:
        """A marker went through: a sync records its nonce for ``Cluster.settle``."""
        if marker.op == "sync":
            self.synced = marker.key

    def _apply(self, msg: Message) -> None:
        """Apply a trusted message: it marks loads in flight, then the strategy decides."""
        self.seq.accept(msg.seq, msg.key)
        self._taint(msg.key, msg.seq, spare=None)
        own = msg.src == self.id
        if own and msg.key not in self.unsure:
            return  # our own write filled us already: by ordering, nothing would change
        self.unsure.discard(msg.key)  # the reply of our write of it was lost: this tells us
        if self.strategy.apply(self.local, msg):
            self.counts["invalidations_received"] += not own
            self._emit("applied", msg.key, msg.seq)
        elif not own:  # our own is outdated by design: the write filled us
            self.counts["messages_outdated"] += 1
            self._emit("outdated", msg.key, msg.seq)

    def _drop(self, msg: Message) -> None:
        """Apply a doubtful message as a plain drop: no value, no floor."""
        self.local.discard(msg.key)
        self._taint(msg.key, msg.seq, spare=None)

    def _retired(self, msg: Message) -> None:
        """A late message of an incarnation this node has left: outdated, whatever it says."""
        self.counts["messages_outdated"] += 1
        self._emit("outdated", msg.key, msg.seq)

    def _forged(self, msg: Message) -> None:
        """Count a message that claims what the store never issued."""
        self.counts["messages_forged"] += 1
        self._emit("forged", msg.key, msg.seq)

    def _taint(self, key: str, seq: int, spare: Ticket | None) -> None:
        """Tell every load of ``key`` in flight (but ``spare``) that version ``seq`` exists."""
        for ticket in self.tickets.get(key, ()):
            if ticket is not spare:
                ticket.seen = max(ticket.seen, seq)

    def _notice(self, inc: str, seq: int) -> None:
        """A reply from the store names its incarnation: another one means a reset.

        One this node has left is a late reply, sent before the restart the node already
        re-based on: its ticket is overtaken by that reset, and the node stays where it is
        (re-basing back would trust the old incarnation's late messages).
        """
        if inc == self.seq.inc or inc in self.seq.retired:
            return
        if self.questions and self.seq.inc:
            self._reset(Meta(inc, seq))
        else:  # the first one this node hears of, or a node that runs no checks
            self.seq.inc = inc

    # -- tickets and events ------------------------------------------------------

    def _untainted(self, ticket: Ticket) -> bool:
        """No message, write or recovery has overtaken this ticket so far."""
        return ticket.epoch == self.epoch and ticket.seen <= ticket.version

    def _finish(self, ticket: Ticket) -> None:
        """Release a ticket (the shell wakes its waiters); releasing twice changes nothing."""
        if ticket.done:
            return
        ticket.done = True
        if ticket.waiters:
            self.finished.append(ticket)
        tickets = self.tickets.get(ticket.key)
        if tickets is not None:
            tickets.remove(ticket)
            if not tickets:
                del self.tickets[ticket.key]

    def _emit(self, kind: str, key: str, version: int) -> None:
        """Queue an event for the shell to emit once its lock is released."""
        self.events.append((kind, key, version))

    def take_events(self) -> Sequence[NodeEvent]:
        """The events queued so far, oldest first; the queue starts empty again."""
        events = self.events
        if not events:  # most calls have none: keep the list, hand out no alias of it
            return ()
        self.events = []
        return events

    def _evicted(self, key: str, version: int) -> None:
        """The local store pushed out its least recently used entry."""
        self.events.append(("evict", key, version))

    def hook_failed(self) -> int:
        """One more failure of a user's hook (counted where the driver emits); the count."""
        self.counts["hook_errors"] += 1
        return self.counts["hook_errors"]

    def take_finished(self) -> list[Ticket]:
        """The settled tickets whose waiters the driver must wake; the list starts empty again."""
        finished, self.finished = self.finished, []
        return finished

    def record(self, op: str, key: str, start: float, version: int, hit: bool, inc: str) -> None:
        """Queue one operation for the recorder (the driver calls it outside its lock)."""
        if self.recording:
            self.records.append((op, key, start, version, hit, inc))

    def take_records(self) -> list[Record]:
        """The records queued so far, oldest first; the queue starts empty again."""
        records, self.records = self.records, []
        return records

    def close(self) -> None:
        """Stop trusting the local cache for good (a closed node reads through Redis)."""
        self.link = move(self.link, "closed")
        self.local.flush()

    def stats(self, extra_hits: int) -> NodeStats:
        """A snapshot of the counters (``extra_hits``: hits the shell counted itself)."""
        local = self.local
        return NodeStats.of(
            self.counts,
            self.hits + extra_hits,
            self.misses,
            local.evictions,
            len(local),
            len(local.suspects),
        )
