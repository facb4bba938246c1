"""RedisBus: the pub/sub listener thread, with reconnect detection.

redis-py resubscribes silently after a dropped connection, and whatever was
published in the gap is lost. Every subscription confirmation after the first is
therefore reported to the node as a resubscription, which flushes its cache.

The listener thread alone touches its PubSub object (creating, reading, closing
it): closing a PubSub from another thread while it reads is the redis-py 8 +
hiredis race that prints "Exception in thread" at shutdown.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import redis

log = logging.getLogger(__name__)

_NETWORK_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class Listener(Protocol):
    """What a bus reports to (a CacheNode)."""

    def receive(self, raw: bytes) -> None:
        """One raw message from the channel."""
        ...

    def subscribed(self, first: bool) -> None:
        """The subscription is (re-)established; ``first`` only once per listener."""
        ...

    def disconnected(self) -> None:
        """The subscription is down: messages are being lost."""
        ...


class Bus(Protocol):
    """The channel a node listens on: started once, stopped once."""

    def start(self, listener: Listener) -> None:
        """Begin delivering to ``listener``; return once subscribed."""
        ...

    def stop(self) -> None:
        """Ask the bus to stop, without waiting."""
        ...

    def join(self, timeout: float | None = None) -> None:
        """Wait for the bus to have stopped."""
        ...


class RedisBus:
    """A pub/sub subscription served by one daemon thread."""

    def __init__(
        self,
        client: redis.Redis,
        channel: str,
        *,
        name: str = "cachelab-bus",
        poll: float = 0.05,
        max_backoff: float = 1.0,
        start_timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.channel = channel
        self.name = name
        self.poll = poll
        self.max_backoff = max_backoff
        self.start_timeout = start_timeout
        self.errors = 0
        self._stop = threading.Event()
        self._ready = threading.Event()  # set once the first attempt succeeded or failed
        self._start_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._listener: Listener | None = None
        self._first = True

    def start(self, listener: Listener) -> None:
        """Start the thread and wait for the first subscription."""
        if self._thread is not None:
            raise RuntimeError("bus already started")
        self._listener = listener
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout) or self._start_error is not None:
            self.stop()
            self.join()
            reason = self._start_error or "timed out"
            raise redis.ConnectionError(f"could not subscribe to {self.channel!r}: {reason}")

    def stop(self) -> None:
        """Ask the thread to stop; it notices within ``poll`` seconds."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to finish."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """Whether the listener thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        """Subscribe, read, and resubscribe after any failure, until stopped."""
        backoff = self.poll
        pubsub: Any = None
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
                    pubsub.subscribe(self.channel)
                self._dispatch(pubsub.get_message(timeout=self.poll))
                backoff = self.poll
            except _NETWORK_ERRORS as exc:
                self._lost(pubsub, exc)
                pubsub = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # a listener must never die; log and start over
                log.exception("unexpected error in %s", self.name)
                self._lost(pubsub, None)
                pubsub = None
                self._stop.wait(backoff)
        self._close(pubsub)

    def _dispatch(self, message: dict[str, Any] | None) -> None:
        """Hand one pub/sub event to the listener."""
        if message is None or self._listener is None:
            return
        kind = message["type"]
        if kind == "message":
            self._listener.receive(message["data"])
        elif kind == "subscribe":
            self._listener.subscribed(self._first)
            self._first = False
            self._ready.set()

    def _lost(self, pubsub: Any, exc: BaseException | None) -> None:
        """Report the subscription down and discard the PubSub object."""
        self.errors += 1
        if not self._ready.is_set():  # the very first subscription failed: start() reports it
            self._start_error = exc or RuntimeError("unexpected error while subscribing")
            self._ready.set()
            self._stop.set()
        if exc is not None:
            log.info("%s lost its subscription: %s", self.name, exc)
        if self._listener is not None:
            self._listener.disconnected()
        self._close(pubsub)

    def _close(self, pubsub: Any) -> None:
        """Close a PubSub object, from this thread only; errors no longer matter."""
        if pubsub is None:
            return
        try:
            pubsub.close()
        except Exception:  # the connection may already be gone
            log.debug("closing pubsub of %s failed", self.name, exc_info=True)
