"""The threaded driver: runs a node's plans, one lock around each step.

A step is the plan's code between two effects; it changes the core under the lock. The
effect itself (a round trip to the store, the user's loader, a wait for another thread's
load) runs outside the lock, and so do the hooks: the events and records a step queued
are emitted once the lock is released, so user code can neither deadlock the node nor
see it half-changed.

The driver is also the phase API (phases.py): each step of a miss on its own, and what the
bus reports, so that the simulator and the tests can put time between the steps.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from cachelab.contract import Store
from cachelab.core import NodeCore, Ticket
from cachelab.hooks import Hooks, call_loader
from cachelab.phases import Phases, Step, advance, emit
from cachelab.plans import Compute, Effect, Join, LoaderCall, Plan, Plans, StoreCall
from cachelab.sampler import Sampler

T = TypeVar("T")


class ThreadDriver(Phases):
    """Performs the effects of one node's plans for any number of threads."""

    def __init__(
        self, core: NodeCore, plans: Plans, store: Store, hooks: Hooks, sampler: Sampler | None
    ) -> None:
        self.core = core
        self.plans = plans
        self.store = store
        self.sampler = sampler
        self.lock = threading.Lock()
        self._hooks = hooks

    def run(self, plan: Plan[T]) -> T:
        """Drive ``plan`` to its end; its result, or its exception."""
        result: Any = None
        error: BaseException | None = None
        while True:
            effect, result, error = self._step(plan, result, error)
            if effect is None:
                if error is not None:
                    raise error
                return result  # type: ignore[no-any-return]
            try:
                result, error = self._perform(effect), None
            except BaseException as exc:  # told to the plan, which decides what it leaves
                result, error = None, exc

    run_now = run

    def owner(self) -> int:
        """The current thread."""
        return threading.get_ident()

    def _step(self, plan: Plan[Any], result: Any, error: BaseException | None) -> Step:
        """Run the plan up to its next effect under the lock; then wake and emit."""
        core = self.core
        with self.lock:
            step = advance(plan, result, error)
            effect = step[0]
            if type(effect) is Join and effect.ticket.event is None:
                effect.ticket.event = threading.Event()
            if core.finished:
                for ticket in core.take_finished():
                    if ticket.event is not None:
                        ticket.event.set()
            events = core.take_events()
            records = core.take_records() if core.records else ()
        if events or records:
            emit(self._hooks, events, records)
        return step

    def _perform(self, effect: Effect) -> Any:
        """One effect, outside the lock."""
        if type(effect) is StoreCall:
            return getattr(self.store, effect.method)(*effect.args)
        if type(effect) is Compute:
            return effect.fn(*effect.args)
        if type(effect) is LoaderCall:
            ticket = effect.ticket
            with self.core.inside_loader(ticket):
                return call_loader(effect.loader, ticket.key)
        assert type(effect) is Join
        effect.ticket.event.wait()
        return True

    def lookup_entry(self, key: str) -> tuple[Any, int] | None:
        """Phase 1 with the version (the simulator's every read: the lock alone)."""
        with self.lock:
            return self.core.lookup(key)

    def pending(self, key: str) -> Ticket | None:
        """The untainted load of ``key`` in flight, if any (to inspect, not to join)."""
        with self.lock:
            return self.core.pending(key)

    def offer_sample(self, key: str) -> bool:
        """A hit on ``key``: queue it if the sampler picks it (True if queued). For drivers
        that look entries up themselves, as the simulator does."""
        sampler = self.sampler
        return sampler is not None and sampler.hit() and sampler.offer(key)

    def verify_pending(self, limit: int | None = None) -> int:
        """Verify one batch of sampled hits (at most ``limit``, default the sampler's batch
        size) in one round trip; return how many were judged.

        The node's thread calls this every ``Sampler.interval`` seconds; the simulator at
        virtual times. A store error is counted (``verify_errors``, and the batch in
        ``verify_dropped``), then raised.
        """
        sampler = self.sampler
        keys = sampler.take(limit) if sampler is not None else ()
        if not keys:
            return 0
        assert sampler is not None
        core = self.core
        try:
            meta, checks = self.store.check(keys)
            with self.lock:
                now, inc = core.timer(), core.seq.inc
                held = [core.local.data.get(key) for key in keys]
            live = [entry if entry is not None and entry[2] > now else None for entry in held]
            sampler.judge(meta, checks, live, inc, core.strategy.codec.digest)
        except BaseException:
            sampler.failed(len(keys))
            raise
        return len(keys)


def phases(node: Any, key: str = "") -> ThreadDriver:
    """The driver of a threaded node (``CacheNode``, ``TrackingNode``): its phase API; of a
    ``StripedNode``, the driver of the stripe that holds ``key``."""
    try:
        driver: ThreadDriver = node._driver
    except AttributeError:
        driver = node.node_of(key)._driver
    return driver
