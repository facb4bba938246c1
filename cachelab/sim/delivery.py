"""Message delivery in a simulated run: Redis fans each message out to the subscribers.

Redis pub/sub delivers to each subscriber over its own connection, in publish order. The
network model (``network.py``) adds delay and jitter, loss, duplication and reordering;
a node whose subscription is down, cut or dead never gets the message, and the trace
says why. Each message is decoded once and handed to every node with ``node.handle``
at its own arrival time.

On the stream transport each node reads the store's stream from its last id instead
(``_read_stream``, as XREAD does): every message reaches it, in order, once. Loss becomes
delay (a lost reply is read again), and duplicates and reordering cannot happen. A node
whose subscription is down or cut reads nothing then, and everything after its last id
once it is back: the replay. Entries trimmed meanwhile are gone, and the numbers skip.
"""

from __future__ import annotations

import heapq

from cachelab.driver import phases
from cachelab.messages import Message, decode
from cachelab.node import CacheNode
from cachelab.sim.state import RunState, new_tuple
from cachelab.sim.trace import TraceEvent

_DETAIL = {
    (op, outcome): op + ":" + outcome
    for op in ("set", "del", "inv", "sync")
    for outcome in ("applied", "outdated", "own")
}


class Delivery(RunState):
    """The bus of a run: publish, fan out, arrive or drop."""

    def _published(self, raw: bytes) -> None:
        """Decode a published message once and send it to every subscriber."""
        msg = decode(raw, self.sim.namespace)
        self._note("send", self.writer, msg.key, msg.seq + self.offset, msg.op)
        if not self.listening:  # every write publishes, but nobody here subscribes
            return
        if self.streaming:
            self._stream_out()
            return
        if self.plain:
            self._fan_out(msg)
            return
        for i in range(self.n):
            self._send(i, msg)

    def _fan_out(self, msg: Message) -> None:
        """``_send`` for every node of a plain network (no loss, duplicates or reordering).

        Inlined because it runs once per message and node: the simulator's hottest loop.
        """
        now, nodes, up, conn, last = self.now, self.nodes, self.up, self.conn, self.last_arrival
        delay, jitter, rand = self.net.delay, self.net.jitter, self.rng.random
        heap, tick, arrive, offset = self.heap, self.tick, self._arrive, self.offset
        for i in range(self.n):
            if nodes[i] is None or not up[i]:
                self._drop(i, msg, now, "down" if nodes[i] is None else "disconnected", offset)
                continue
            t = now + delay + jitter * rand() if jitter else now + delay
            if t < last[i]:
                t = last[i]  # pub/sub keeps each subscriber's messages in order
            last[i] = t
            heapq.heappush(heap, (t, next(tick), arrive, (i, conn[i], msg, now, False, offset)))

    def _send(self, i: int, msg: Message) -> None:
        """Schedule one delivery (and maybe its duplicate), or drop it at once."""
        net, rng, now, offset = self.net, self.rng, self.now, self.offset
        if self.nodes[i] is None or not self.up[i]:
            self._drop(i, msg, now, "down" if self.nodes[i] is None else "disconnected", offset)
            return
        arrive = now + net.latency(rng)
        if net.reorder and rng.random() < net.reorder:
            arrive += net.holdback * rng.random()  # out of FIFO: later messages overtake it
        else:
            arrive = max(arrive, self.last_arrival[i])
            self.last_arrival[i] = arrive
        self._at(arrive, self._arrive, i, self.conn[i], msg, now, self._lost(), offset)
        if net.duplicate and rng.random() < net.duplicate:
            again = arrive + net.latency(rng)
            self._at(again, self._arrive, i, self.conn[i], msg, now, self._lost(), offset)

    def _lost(self) -> bool:
        """Draw whether one delivery is lost."""
        return bool(self.net.loss) and self.rng.random() < self.net.loss

    def _arrive(
        self, i: int, conn: int, msg: Message, sent: float, lost: bool, offset: int
    ) -> None:
        """A message reaches node ``i``, unless it was lost on the way.

        ``offset`` is the one in force when it was published.
        """
        node = self.nodes[i]
        if lost or node is None or conn != self.conn[i] or self.cut[i]:
            self._drop(i, msg, sent, self._reason(i, conn, lost), offset)
            return
        self._hand(node, msg, sent, offset)

    def _hand(self, node: CacheNode, msg: Message, sent: float, offset: int) -> None:
        """Node ``node`` handles ``msg`` (sent at ``sent`` under ``offset``) now."""
        self.outcome = "own"
        self.arriving = (node.name, msg, sent, offset)
        phases(node).handle(msg)
        self.delivered += 1
        if self.arriving is not None:  # the node reported no outcome: its own message
            self._delivered("own")
        if self.restarted and self.outcome == "applied":
            self.held[node.name].pop(msg.key, None)  # it replaced or dropped an older entry

    def _stream_out(self) -> None:
        """A new stream entry: every reader's blocked XREAD returns it after a delay."""
        end, net, rng = self.store.stream_end(), self.net, self.rng
        for i in range(self.n):
            if self.nodes[i] is None or not self.up[i]:
                continue  # it reads the entry when it is back
            t = self.now + net.latency(rng)
            if self._lost():
                t += net.latency(rng)  # the reply was lost: the reader reads it again
            t = max(t, self.last_arrival[i])
            self.last_arrival[i] = t
            self._at(t, self._read_stream, i, self.conn[i], end, False)

    def _read_stream(self, i: int, conn: int, end: int, replay: bool) -> None:
        """Node ``i``'s read of the stream after its last id, up to ``end``, returns.

        ``replay``: the read that follows a reconnect; the node is told it caught up.
        """
        node = self.nodes[i]
        if node is None or conn != self.conn[i] or self.cut[i]:
            return  # down or cut: nothing read, and the last id stays where it was
        namespace, offset = self.sim.namespace, self.offset  # a restart empties the stream
        for entry_id, raw, sent in self.store.stream_after(self.cursor[i], end):
            self.cursor[i] = entry_id
            self._hand(node, decode(raw, namespace), sent, offset)
        if replay:
            phases(node).replayed()

    def _catch_up(self, i: int, replay: bool) -> None:
        """Node ``i`` reads the stream on from its last id, one delay from now: after a
        reconnect (``replay``), or when its stuck read returns as a partition heals."""
        end, later = self.store.stream_end(), self.now + self.net.latency(self.rng)
        self._at(later, self._read_stream, i, self.conn[i], end, replay)

    def _delivered(self, outcome: str) -> None:
        """Trace the delivery in flight, at the moment the node applied (or ignored) it:
        before any repair it set off, which the node reports after."""
        assert self.arriving is not None
        name, msg, sent, offset = self.arriving
        self.arriving = None
        detail = _DETAIL[msg.op, outcome]
        event = (self.now, "deliver", name, msg.key, msg.seq + offset, detail, sent)
        self.trace.append(new_tuple(TraceEvent, event))

    def _reason(self, i: int, conn: int, lost: bool) -> str:
        """Why a delivery failed: the first cause that applies."""
        if lost:
            return "loss"
        if self.nodes[i] is None:
            return "down"
        return "disconnected" if conn != self.conn[i] else "partition"

    def _drop(self, i: int, msg: Message, sent: float, reason: str, offset: int) -> None:
        """Trace a message (published under ``offset``) that never reached node ``i``."""
        self.dropped += 1
        version = msg.seq + offset
        event = TraceEvent(self.now, "drop", self.names[i], msg.key, version, reason, sent)
        self.trace.append(event)
