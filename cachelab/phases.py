"""The phase API, written once for both drivers, and the step every driver takes.

Each phase is one plan (plans.py) run by the driver's ``run``: the threaded driver returns
the plan's result, the asyncio driver an awaitable of it. ``run_now`` runs a plan that has
no effect at once, on either. The simulator and the tests put time between phases; the
listener adapter (listener.py) calls the ones a bus reports.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from cachelab.contract import Meta
from cachelab.core import NodeCore, Ticket
from cachelab.hooks import Hooks
from cachelab.messages import NO_VALUE, Message, channel
from cachelab.plans import Effect, Plan, Plans, plain

Step = tuple[Effect | None, Any, BaseException | None]


def advance(plan: Plan[Any], result: Any, error: BaseException | None) -> Step:
    """Run ``plan`` to its next effect, sending ``result`` or throwing ``error`` in: the
    effect (None once the plan ended), and the plan's result or exception at its end."""
    try:
        return (plan.send(result) if error is None else plan.throw(error)), None, None
    except StopIteration as stop:
        return None, stop.value, None
    except BaseException as exc:
        return None, None, exc


def emit(hooks: Hooks, events: Any, records: Any) -> None:
    """Tell the hooks what a step queued (taken from the core), outside any lock."""
    hooks.emit(events)
    for record in records:
        hooks.record(*record)


class Phases:
    """Every phase of a node, each one plan; ``run``, ``run_now`` and ``owner`` are the
    driver's."""

    core: NodeCore
    plans: Plans

    def run(self, plan: Plan[Any]) -> Any:
        """Drive ``plan`` to its end (the threaded driver) or return its awaitable (asyncio)."""
        raise NotImplementedError

    def run_now(self, plan: Plan[Any]) -> Any:
        """Drive a plan without effects at once; its result."""
        raise NotImplementedError

    def now(self, call: Callable[[], Any]) -> Any:
        """Run one core call with no effect at once (under the lock, on the threaded
        driver), then emit what it queued; its result."""
        return self.run_now(plain(call))

    def owner(self) -> int:
        """Who leads or joins a load: the current thread, or task."""
        raise NotImplementedError

    # -- a miss, phase by phase ------------------------------------------------------

    def lookup(self, key: str) -> Any:
        """Phase 1: the local value (``ABSENT`` for a cached absence), or ``NO_VALUE``."""
        hit = self.lookup_entry(key)
        return NO_VALUE if hit is None else hit[0]

    def lookup_entry(self, key: str) -> tuple[Any, int] | None:
        """Phase 1 with the version: ``(value, version)``, or None."""
        return self.now(partial(self.core.lookup, key))  # type: ignore[no-any-return]

    def pending(self, key: str) -> Ticket | None:
        """The untainted load of ``key`` in flight, if any (to inspect, not to join)."""
        return self.now(partial(self.core.pending, key))  # type: ignore[no-any-return]

    def load(self, key: str) -> Any:
        """Phase 2: take a fill-guard ticket, then read ``key`` from the store (the ticket)."""
        return self.run(self.plans.load(key, self.owner()))

    def load_external(self, ticket: Ticket, loader: Callable[..., Any]) -> Any:
        """Phase 2b: the store had nothing; store ``loader()``'s value unless the key
        changed since ``load`` (``fill`` settles the ticket)."""
        return self.run(self.plans.load_external(ticket, loader))

    def fill(self, ticket: Ticket) -> Any:
        """Phase 3: fill the local store unless the guard refuses; the value."""
        return self.run_now(self.plans.fill(ticket))

    # -- what a bus reports --------------------------------------------------------------

    def handle(self, msg: Message) -> Any:
        """Apply one decoded message (asking the store if need be), then repair."""
        return self.run(self.plans.message(msg))

    def invalid(self, error: Exception) -> Any:
        """A message that failed to decode: counted, dropped."""
        return self.run(plain(partial(self.core.invalid, error)))

    def subscribed(self, first: bool, meta: Meta | None = None) -> Any:
        """The bus is (re)subscribed; ``meta`` when it read it with its position."""
        return self.run(self.plans.subscribed(first, meta))

    def replayed(self) -> Any:
        """Stream: the replay after a reconnect caught up."""
        return self.run(self.plans.replayed())

    def disconnected(self) -> None:
        """The bus is down (at once, on either driver: a bus reports it synchronously)."""
        self.now(self.core.disconnected)

    def repair(self) -> Any:
        """Revalidate suspect entries, one batch per round trip."""
        return self.run(self.plans.repair())

    def send_beat(self, beat_channel: str, token: str) -> Any:
        """Publish a heartbeat that carries the store's (incarnation, seq)."""
        return self.run(self.plans.mark(beat_channel, "beat", token))

    # -- settling ----------------------------------------------------------------------

    def publish_sync(self, namespace: str, nonce: str) -> Any:
        """Publish a sync marker; a node that has it has handled every earlier message."""
        return self.run(self.plans.mark(channel(namespace), "sync", nonce))

    def synced(self, nonce: str) -> bool:
        """Whether the sync marker ``nonce`` reached the node, and no repair is owed."""
        return self.core.has_synced(nonce)
