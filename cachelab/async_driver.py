"""The asyncio driver: runs a node's plans on one event loop, awaiting each effect.

No lock: a step (the plan's code between two effects) runs between two awaits on the
loop's thread, so no other task interleaves with it. Where the threaded driver releases
its lock, this one awaits. Single flight waits on an ``asyncio.Future`` per ticket,
shielded, so cancelling one waiter cancels that waiter only; a cancelled leader's ticket
is released, and its waiters look again (one of them leads).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, TypeVar

from cachelab.core import NodeCore
from cachelab.hooks import Hooks, call_loader
from cachelab.phases import Phases, Step, advance, emit
from cachelab.plans import Compute, Effect, Join, LoaderCall, Plan, Plans, StoreCall

T = TypeVar("T")


class AsyncDriver(Phases):
    """Performs the effects of one asyncio node's plans."""

    def __init__(self, core: NodeCore, plans: Plans, store: Any, hooks: Hooks) -> None:
        self.core = core
        self.plans = plans
        self.store = store
        self._hooks = hooks

    async def run(self, plan: Plan[T]) -> T:
        """Drive ``plan`` to its end; its result, or its exception."""
        result: Any = None
        error: BaseException | None = None
        while True:
            effect, result, error = self.step(plan, result, error)
            if effect is None:
                if error is not None:
                    raise error
                return result  # type: ignore[no-any-return]
            try:
                result, error = await self._perform(effect), None
            except BaseException as exc:  # cancellation included: the plan decides
                result, error = None, exc

    def step(self, plan: Plan[Any], result: Any, error: BaseException | None) -> Step:
        """Run the plan up to its next effect; then wake and emit."""
        core = self.core
        step = advance(plan, result, error)
        for ticket in core.take_finished():
            if ticket.event is not None and not ticket.event.done():
                ticket.event.set_result(None)
        emit(self._hooks, core.take_events(), core.take_records() if core.records else ())
        return step

    def run_now(self, plan: Plan[T]) -> T:
        """Drive a plan that has no effect (a core call), synchronously."""
        effect, result, error = self.step(plan, None, None)
        assert effect is None, "run_now is for plans without effects"
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    async def _perform(self, effect: Effect) -> Any:
        """One effect, awaited."""
        if type(effect) is StoreCall:
            return await getattr(self.store, effect.method)(*effect.args)
        if type(effect) is Compute:
            return effect.fn(*effect.args)
        if type(effect) is LoaderCall:
            ticket = effect.ticket
            with self.core.inside_loader(ticket):
                value = call_loader(effect.loader, ticket.key)
                if inspect.isawaitable(value):
                    value = await value
            return value
        assert type(effect) is Join
        ticket = effect.ticket
        if ticket.event is None:
            ticket.event = asyncio.get_running_loop().create_future()
        await asyncio.shield(ticket.event)
        return not isinstance(ticket.error, asyncio.CancelledError)

    def owner(self) -> int:
        """The current task."""
        return id(asyncio.current_task())
