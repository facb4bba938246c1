"""AsyncRedisBus: the pub/sub listener as an asyncio task, with the rules of bus.py.

One task alone creates, reads and closes its PubSub (``redis.asyncio``, or fakeredis's
async client). ``bus.Subscription`` says what each event means, as it does for the
threaded ``RedisBus``: a message for the node, our heartbeat's echo on a private beat
channel, or a (re)subscription. The task subscribes on a client of its own that never
retries: redis-py would otherwise reconnect and resubscribe silently, and whatever was
published in the gap would be lost while the node went on serving hits.

Nothing the task meets can end it: a server error (the heartbeat's silence included) is a
lost subscription, any other exception is logged and treated the same. The node is told
it is disconnected, the PubSub is dropped, and the task subscribes again after a backoff
that doubles up to ``max_backoff``. ``stop()`` cancels the task and awaits it; the task
closes its PubSub on its own way out, so nothing is left pending and nothing is printed.
Should it end any other way (``SystemExit`` and the like), it tells the node first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cachelab.bus import _SERVER_ERRORS, RECEIVED, SUBSCRIBED, Heartbeat, Subscription
from cachelab.strict import Gate

log = logging.getLogger(__name__)


class AsyncListener(Protocol):
    """What an async bus reports to (an AsyncCacheNode)."""

    async def receive(self, raw: bytes) -> None:
        """One raw message from the channel (or a heartbeat from the beat channel)."""
        ...

    async def send_beat(self, channel: str, token: str) -> None:
        """Publish a heartbeat carrying ``token`` on ``channel``."""
        ...

    async def maintain(self) -> None:
        """Called between messages: time for owed work (repair)."""
        ...

    async def subscribed(self, first: bool) -> None:
        """The subscription is (re-)established; ``first`` only once per listener."""
        ...

    def disconnected(self) -> None:
        """The subscription is down: messages are being lost (no round trip: sync)."""
        ...

    def doubting(self) -> bool:
        """Whether a claimed gap waits for a marker (the bus then beats at once)."""
        ...


class AsyncRedisBus:
    """A pub/sub subscription served by one asyncio task, with a heartbeat."""

    ordered = True  # one connection: Redis delivers in publish order, each message once

    def __init__(
        self,
        client: redis.asyncio.Redis,
        channel: str,
        *,
        name: str = "cachelab-bus",
        poll: float = 0.05,
        heartbeat: float | None = 1.0,
        max_backoff: float = 1.0,
        start_timeout: float = 10.0,
        strict: bool = False,
    ) -> None:
        self.client = client
        pool = client.connection_pool
        kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}  # no silent retry
        self._own = redis.asyncio.Redis(
            connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs)
        )
        self.gate = Gate() if strict else None  # strict=True: what the hit path asks
        self._live = False
        self.channel = channel
        self.name = name
        self.poll = poll
        self.max_backoff = max_backoff
        self.start_timeout = start_timeout
        self.subscription = Subscription(channel, Heartbeat(heartbeat))
        self.beat_channel = self.subscription.beat_channel
        self.heartbeat = self.subscription.heartbeat
        self._listener: AsyncListener | None = None
        self._first = True
        self._ready: asyncio.Future[None] | None = None  # done once subscribed, or failed
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None  # touched by the task only

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The listener task (None before ``start``)."""
        return self._task

    async def start(self, listener: AsyncListener) -> None:
        """Start the task; return once subscribed, or raise ``redis.ConnectionError``."""
        if self._task is not None:
            raise RuntimeError("bus already started")
        self._listener = listener
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=self.name)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except BaseException as exc:
            self._ready.cancel()  # whatever the task sets later, nobody waits for it
            await self.stop()
            if isinstance(exc, asyncio.CancelledError):
                raise
            reason = "timed out" if isinstance(exc, TimeoutError) else exc
            raise redis.ConnectionError(
                f"could not subscribe to {self.channel!r}: {reason}"
            ) from None

    async def stop(self) -> None:
        """Cancel the task and wait for it to have closed its PubSub. Idempotent."""
        self._stopping = True
        task = self._task
        if task is None or task.done():
            if task is not None and not task.cancelled():
                task.exception()  # retrieved: never "Task exception was never retrieved"
            return
        # Python 3.11's wait_for (inside redis-py and fakeredis reads) can swallow a
        # cancellation that meets a timeout; the loop also checks _stopping, and the
        # cancellation is repeated until the task is done.
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=self.poll)  # a cancelled caller stops here
        if not task.cancelled():
            task.exception()  # logged by the task already

    async def _run(self) -> None:
        """Serve the listener; should the task end unbidden, tell it first."""
        try:
            await self._serve()
        except asyncio.CancelledError:
            raise
        except BaseException:  # SystemExit and the like: end, but never as a stack on stderr
            log.exception("the listener task %s is ending", self.name)
        finally:
            if not self._stopping:
                self._tell_disconnected()
            await self._drop()

    async def _serve(self) -> None:
        """Step, and subscribe again after any failure, until cancelled (or stopping)."""
        backoff = self.poll
        while not self._stopping:
            try:
                await self._step()
                backoff = self.poll
            except asyncio.CancelledError:
                raise
            except _SERVER_ERRORS as exc:
                await self._lost(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # a listener must never die; log and start over
                log.exception("unexpected error in %s", self.name)
                await self._lost(None)
                await asyncio.sleep(backoff)

    async def _step(self) -> None:
        """Subscribe if need be, beat, and hand on one pub/sub event."""
        if self._pubsub is None:
            await self._subscribe()
        if self._listener is not None and self._listener.doubting():
            self.heartbeat.hurry()
        token = self.heartbeat.due()  # raises if the last beat never came back
        if token is not None and self._listener is not None:
            await self._listener.send_beat(self.beat_channel, token)
        message = await self._pubsub.get_message(timeout=self.poll)
        if message is not None and self._listener is not None:
            # No await lies between the read and here: a hit sees the bytes or this turn.
            if self.gate is not None:
                self.gate.enter()
            await self._dispatch(self._listener, message)
            if self.gate is not None and self._live:
                self.gate.leave(self._pubsub.connection)
        if self._listener is not None and self._ready is not None and self._ready.done():
            await self._listener.maintain()

    async def _subscribe(self) -> None:
        """A fresh PubSub on the channel and the beat channel; the gate watches it."""
        self._live = False
        self._pubsub = self._own.pubsub()
        self.subscription.restart()
        await self._pubsub.subscribe(self.channel, self.beat_channel)
        if self.gate is not None:
            self.gate.watch_async(self._pubsub.connection)

    async def _dispatch(self, listener: AsyncListener, message: dict[str, Any]) -> None:
        """Hand one pub/sub event to the listener."""
        event = self.subscription.event(message)
        if event is RECEIVED:
            await listener.receive(message["data"])
        elif event is SUBSCRIBED:
            await listener.subscribed(self._first)
            self._first = False
            self._live = True
            self.heartbeat.restart()
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)

    async def _lost(self, exc: BaseException | None) -> None:
        """Report the subscription down and drop it."""
        if self._ready is not None and not self._ready.done():  # start() reports it
            self._ready.set_exception(exc or RuntimeError("unexpected error while subscribing"))
        if exc is not None:
            log.info("%s lost its connection: %s", self.name, exc)
        self._tell_disconnected()
        await self._drop()

    def _tell_disconnected(self) -> None:
        """Tell the listener it can no longer trust what it heard; it must not stop us."""
        if self._listener is None:
            return
        try:
            self._listener.disconnected()
        except Exception:
            log.exception("%s: the listener failed to take a disconnection", self.name)

    async def _drop(self) -> None:
        """Close the PubSub, from the task only; errors no longer matter."""
        if self.gate is not None:
            self.gate.close()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        try:
            await pubsub.aclose()
        except Exception:  # the connection may already be gone
            log.debug("closing pubsub of %s failed", self.name, exc_info=True)
