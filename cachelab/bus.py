"""RedisBus: the pub/sub listener thread, with reconnect detection and a heartbeat.

redis-py would resubscribe silently after a dropped connection, tens of milliseconds
later, and the node would serve hits meanwhile: the bus subscribes on a client of its own
that never retries, so a lost connection surfaces at once and is reported. Should a
subscription be confirmed again anyway, it is reported as a resubscription, which
distrusts the cache.

The listener thread alone touches its PubSub object (creating, reading, closing
it): closing a PubSub from another thread while it reads is the redis-py 8 +
hiredis race that prints "Exception in thread" at shutdown.

Nothing the listener does can end the thread: an exception from it is logged and
treated as a lost subscription (the node stops trusting its cache, then resubscribes
and repairs). Should the thread end anyway, it tells the node first. These rules live
once, in ``ListenerThread``; ``streambus.StreamBus`` keeps them too.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachelab.errors import CachelabError
from cachelab.stats import LagStats
from cachelab.strict import Gate

log = logging.getLogger(__name__)

# The server could not serve us (gone, stalled, out of memory, loading; on a Redis Cluster, a
# slot no node serves yet): the subscription is as good as lost. The node stops trusting its
# cache and the bus resubscribes; no traceback.
_SERVER_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.ResponseError,
    redis.exceptions.RedisClusterException,
    OSError,
)


class Listener(Protocol):
    """What a bus reports to (a CacheNode)."""

    def receive(self, raw: bytes) -> None:
        """One raw message from the channel (or a heartbeat from the beat channel)."""
        ...

    def send_beat(self, channel: str, token: str) -> None:
        """Publish a heartbeat carrying ``token`` on ``channel``."""
        ...

    def maintain(self) -> None:
        """Called between messages: time for owed work (repair)."""
        ...

    def subscribed(self, first: bool) -> None:
        """The subscription is (re-)established; ``first`` only once per listener."""
        ...

    def disconnected(self) -> None:
        """The subscription is down: messages are being lost."""
        ...

    def doubting(self) -> bool:
        """Whether a claimed gap waits for a marker (the bus then beats at once)."""
        ...


class Bus(Protocol):
    """The channel a node listens on: started once, stopped once.

    A bus may say ``ordered = False`` when it can reorder or repeat messages (the
    simulator's lossy networks); a node then does not read a repeated number as a forgery.
    """

    def start(self, listener: Listener) -> None:
        """Begin delivering to ``listener``; return once subscribed."""
        ...

    def stop(self) -> None:
        """Ask the bus to stop, without waiting."""
        ...

    def join(self, timeout: float | None = None) -> None:
        """Wait for the bus to have stopped."""
        ...


class SubscriptionSilent(CachelabError, redis.ConnectionError):
    """The subscription stopped delivering (its heartbeat did not come back)."""


class SlotMoved(CachelabError, redis.ConnectionError):
    """A Redis Cluster moved the slot of a sharded channel to another shard."""


class Lag:
    """The round trips of a heartbeat, in seconds: how many, their sum, the last ``window``.

    Written by the listener thread, read by any (a metrics scrape): under a lock.
    """

    def __init__(self, window: int = 64) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._total = 0.0
        self._recent: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        """One beat came back after ``seconds``."""
        with self._lock:
            self._count += 1
            self._total += seconds
            self._recent.append(seconds)

    def snapshot(self) -> LagStats:
        """What has been measured so far."""
        with self._lock:
            return LagStats(self._count, self._total, tuple(self._recent))


class Heartbeat:
    """An echo on a private channel: proof that the subscription still delivers.

    A killed or half-open connection can leave a subscriber deaf without any error
    (fakeredis after CLIENT KILL, or a peer that vanished without a FIN). Only an
    end-to-end echo tells. Each echo's delay, from just before the beat is sent to its
    arrival on the subscription, is kept in ``lag`` (see ``CacheNode.propagation_lag``).
    """

    def __init__(self, interval: float | None, timer: Callable[[], float] = time.monotonic) -> None:
        if interval is not None and not interval > 0:
            raise ValueError(
                f"heartbeat must be a positive number of seconds or None, not {interval!r}"
            )
        self.interval = interval
        self.timer = timer
        self._next = float("inf")
        self._waiting: str | None = None
        self._deadline = float("inf")
        self._sent = 0.0
        self.lag = Lag()

    def hurry(self) -> None:
        """Beat at the next chance, unless a beat is already on its way."""
        if self.interval is not None and self._waiting is None:
            self._next = min(self._next, self.timer())

    def restart(self) -> None:
        """Start beating from now (the subscription was just confirmed)."""
        self._waiting = None
        self._next = self.timer() + self.interval if self.interval else float("inf")

    def pause(self) -> None:
        """No beats until the next ``restart`` (while subscribing)."""
        self._waiting = None
        self._next = float("inf")

    def due(self) -> str | None:
        """The token to send now, if a beat is due; raise if the last one never came."""
        now = self.timer()
        if self._waiting is not None and now > self._deadline:
            raise SubscriptionSilent("heartbeat not echoed: the subscription is deaf")
        if self.interval is None or self._waiting is not None or now < self._next:
            return None
        self._waiting = secrets.token_hex(8)
        self._sent = now
        self._deadline = now + 3 * self.interval
        return self._waiting

    def echo(self, payload: bytes | str) -> bool:
        """Whether ``payload`` (a beat message) carries the awaited token; if so, reset."""
        data = payload.encode() if isinstance(payload, str) else payload
        if self._waiting is None or b'"key":"' + self._waiting.encode() + b'"' not in data:
            return False
        return self.answer(self._waiting)

    def answer(self, token: str) -> bool:
        """Whether ``token`` is the awaited one (a PING's PONG, say); if so, reset."""
        if self._waiting is None or token != self._waiting:
            return False
        now = self.timer()
        self.lag.add(now - self._sent)
        self._waiting = None
        self._next = now + (self.interval or 0.0)
        return True


RECEIVED, SUBSCRIBED = "received", "subscribed"


class Subscription:
    """What each pub/sub event means to a bus on a channel and its private beat channel.

    The rules of every pub/sub bus, threaded (``RedisBus``) or a task
    (``async_bus.AsyncRedisBus``): a message on the channel, or our own echo on the beat
    channel, is ``RECEIVED`` (to hand to the node); once both channels are confirmed the
    bus is ``SUBSCRIBED``. A channel confirmed twice on one PubSub means redis-py
    reconnected and resubscribed by itself, and messages may have been lost meanwhile:
    that is ``SUBSCRIBED`` again, which the bus reports as a resubscription.
    """

    def __init__(self, channel: str, heartbeat: Heartbeat) -> None:
        self.channel = channel
        self.beat_channel = f"{channel}:beat:{secrets.token_hex(6)}"
        self.heartbeat = heartbeat
        self._confirmed: set[str] = set()

    def restart(self) -> None:
        """A fresh PubSub: nothing confirmed, no beat until the subscription is."""
        self._confirmed.clear()
        self.heartbeat.pause()

    def event(self, message: dict[str, Any]) -> str | None:
        """``RECEIVED``, ``SUBSCRIBED``, or None (nothing for the node).

        Sharded pub/sub (a Redis Cluster) has the same events under other names; the
        server unsubscribes us by itself when the channel's slot moves to another shard,
        and that loses the subscription (``SlotMoved``).
        """
        kind, name = message["type"], _text(message["channel"])
        if kind in ("message", "smessage"):
            if name == self.beat_channel and not self.heartbeat.echo(message["data"]):
                return None  # not our beat: nothing to learn from it
            return RECEIVED
        if kind == "sunsubscribe":
            raise SlotMoved(f"the server unsubscribed us from {name!r}: its slot moved")
        if kind not in ("subscribe", "ssubscribe"):
            return None
        if name in self._confirmed:
            self._confirmed.clear()
        self._confirmed.add(name)
        return SUBSCRIBED if self._confirmed == {self.channel, self.beat_channel} else None


class ListenerThread:
    """One daemon thread serving a listener: the rules every bus of a node keeps.

    Nothing can end the thread: a server error is a lost connection (the listener is told,
    the thread waits a backoff that doubles up to ``max_backoff``, then connects again); any
    other exception is logged and treated the same (the first wait is ``backoff``, by
    default ``poll``). Should the thread end anyway
    (``SystemExit`` and the like), it tells the listener first, and never prints a stack on
    stderr. ``start()`` returns once the first connection is up (``_started``), or raises;
    ``stop()`` asks, and the thread notices within ``poll`` seconds; ``join()`` waits. A
    subclass says how to connect and read (``_step``) and how to drop its connection
    (``_drop``); both run on the thread alone.
    """

    def __init__(
        self,
        name: str,
        poll: float,
        max_backoff: float,
        start_timeout: float,
        target: str,
        backoff: float | None = None,
    ) -> None:
        self.name = name
        self.poll = poll
        self.backoff = poll if backoff is None else backoff
        self.max_backoff = max_backoff
        self.start_timeout = start_timeout
        self._target = target  # what a failed start could not do, in its error
        self._stop = threading.Event()
        self._ready = threading.Event()  # set once the first attempt succeeded or failed
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._listener: Any = None

    def start(self, listener: Any) -> None:
        """Start the thread and wait for the first connection."""
        if self._thread is not None:
            raise RuntimeError("bus already started")
        self._listener = listener
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout) or self._start_error is not None:
            self.stop()
            self.join()
            reason = self._start_error or "timed out"
            raise redis.ConnectionError(f"could not {self._target}: {reason}")

    def stop(self) -> None:
        """Ask the thread to stop; it notices within ``poll`` seconds."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to finish."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _step(self) -> None:
        """Connect if need be, then read and hand on what came (at most ``poll`` seconds)."""
        raise NotImplementedError

    def _drop(self) -> None:
        """Close the connection, if any; errors no longer matter."""
        raise NotImplementedError

    def _started(self) -> None:
        """The first connection is up: ``start()`` may return."""
        self._ready.set()

    def _run(self) -> None:
        """Serve the listener; should the thread end unbidden, tell it first."""
        try:
            self._serve()
        except BaseException:  # SystemExit and the like: end, but never as a stack on stderr
            log.exception("the listener thread %s is ending", self.name)
        finally:
            if not self._stop.is_set():
                self._tell_disconnected()
            self._drop()

    def _serve(self) -> None:
        """Step, and connect again after any failure, until stopped."""
        backoff = self.backoff
        while not self._stop.is_set():
            try:
                self._step()
                backoff = self.backoff
            except _SERVER_ERRORS as exc:
                self._lost(exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # a listener must never die; log and start over
                log.exception("unexpected error in %s", self.name)
                self._lost(None)
                self._stop.wait(backoff)

    def _maintain(self) -> None:
        """Let the listener do owed work between messages."""
        if self._listener is not None and self._ready.is_set():
            self._listener.maintain()

    def _lost(self, exc: BaseException | None) -> None:
        """Report the connection down and drop it."""
        if not self._ready.is_set():  # the very first connection failed: start() reports it
            self._start_error = exc or RuntimeError("unexpected error while connecting")
            self._ready.set()
            self._stop.set()
        if exc is not None:
            log.info("%s lost its connection: %s", self.name, exc)
        self._tell_disconnected()
        self._drop()

    def _tell_disconnected(self) -> None:
        """Tell the listener it can no longer trust what it heard; it must not stop us."""
        if self._listener is None:
            return
        try:
            self._listener.disconnected()
        except Exception:
            log.exception("%s: the listener failed to take a disconnection", self.name)


NO_RETRY = Retry(NoBackoff(), 0)
"""A subscription's policy: a lost connection surfaces, to be reported, never retried."""

_DRAIN_BATCH = 256  # messages read in one round before the bus beats and repairs again


class RedisBus(ListenerThread):
    """A pub/sub subscription served by one daemon thread, with a heartbeat."""

    ordered = True  # one connection: Redis delivers in publish order, each message once

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        *,
        name: str = "cachelab-bus",
        poll: float = 0.05,
        heartbeat: float | None = 1.0,
        max_backoff: float = 1.0,
        start_timeout: float = 10.0,
        strict: bool = False,
    ) -> None:
        super().__init__(name, poll, max_backoff, start_timeout, f"subscribe to {channel!r}")
        self.client = client
        self._own = self._private(client)
        self.channel = channel
        self.subscription = Subscription(channel, Heartbeat(heartbeat))
        self.beat_channel = self.subscription.beat_channel
        self.heartbeat = self.subscription.heartbeat
        self._listener: Listener | None = None
        self._first = True
        self._live = False  # the current connection's subscription is confirmed
        self._pubsub: Any = None  # touched by the listener thread only
        self.gate = Gate() if strict else None  # strict=True: what the hit path asks

    def _step(self) -> None:
        """Subscribe if need be, beat, and hand on the pub/sub events that came."""
        if self._pubsub is None:
            self._live = False
            self._subscribe()
            self._watch()
        self._beat()
        if self.gate is None:
            self._dispatch(self._pubsub.get_message(timeout=self.poll))
        else:
            self._drain(self.gate)
        self._maintain()

    def _private(self, client: redis.Redis) -> redis.Redis | None:
        """The client the bus subscribes on: ``client``'s server, its own pool, no retry."""
        return private_client(client, retry=NO_RETRY)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread, then close the connections of the bus's own client."""
        super().join(timeout)
        if self._own is not None and (self._thread is None or not self._thread.is_alive()):
            self._own.connection_pool.disconnect()

    def _drain(self, gate: Gate) -> None:
        """Strict: wait until a byte comes, then read and apply every whole message before
        hits resume (an error leaves them stopped: the connection is dropped)."""
        gate.wait(self.poll)
        gate.enter()
        for _ in range(_DRAIN_BATCH):
            message = self._pubsub.get_message(timeout=0)
            if message is None:
                break
            self._dispatch(message)
        else:
            return  # more may be waiting: hits stay stopped until the next round reads it
        if self._live:
            gate.leave(self._pubsub.connection)

    def _watch(self) -> None:
        """Strict: the gate watches the new connection's socket."""
        if self.gate is not None:
            self.gate.watch(self._pubsub.connection)

    def _confirmed(self, listener: Any) -> None:
        """The subscription is confirmed: tell the listener, once as the first."""
        listener.subscribed(self._first)
        self._first = False
        self._live = True
        self.heartbeat.restart()
        self._started()

    def _subscribe(self) -> None:
        """A fresh PubSub on the namespace's channel and this bus's heartbeat channel."""
        assert self._own is not None
        self._pubsub = self._own.pubsub()
        self.subscription.restart()
        self._pubsub.subscribe(self.channel, self.beat_channel)

    def _beat(self) -> None:
        """Send a heartbeat when one is due (raises if the last one never came back)."""
        if self._listener is not None and self._listener.doubting():
            self.heartbeat.hurry()
        token = self.heartbeat.due()
        if token is not None and self._listener is not None:
            self._listener.send_beat(self.beat_channel, token)

    def _dispatch(self, message: dict[str, Any] | None) -> None:
        """Hand one pub/sub event to the listener."""
        if message is None or self._listener is None:
            return
        event = self.subscription.event(message)
        if event is RECEIVED:
            self._listener.receive(message["data"])
        elif event is SUBSCRIBED:
            self._confirmed(self._listener)

    def _drop(self) -> None:
        """Close the PubSub object, from this thread only; errors no longer matter."""
        if self.gate is not None:
            self.gate.close()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        try:
            pubsub.close()
        except Exception:  # the connection may already be gone
            log.debug("closing pubsub of %s failed", self.name, exc_info=True)


def private_client(
    client: redis.Redis, drop: tuple[str, ...] = (), **overrides: Any
) -> redis.Redis:
    """A client of the same server as ``client``, with a pool of its own and ``overrides``;
    the connection options named with a prefix in ``drop`` are left out."""
    pool = client.connection_pool
    kwargs = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if name != "himport_registry" and not name.startswith(drop)  # the registry is per client
    }
    kwargs.update(overrides)
    return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))


def _text(name: bytes | str) -> str:
    """A channel name as str, whatever the client's decode_responses."""
    return name.decode() if isinstance(name, bytes) else name
