"""User code a node calls: its event hook and its recorder (contained), and loaders.

Hooks run outside the node's lock, so they may read the node (``stats``) or call it. An
exception in a hook is counted and logged, never raised into the node or its listener
thread: a tracing hook must not be able to take a cache down. A loader is the
caller's own code on the caller's thread, so its exceptions reach the caller.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("cachelab.node")

Recorder = Callable[[str, str, str, float, float, int, bool, str], None]
"""Called as ``recorder(node, op, key, start, end, version, hit, inc)`` after each operation;
``inc`` is the incarnation the version belongs to."""

EventHook = Callable[[str, str, str, int], None]
"""Called as ``events(node, kind, key, version)``: fill, fill_rejected, evict, flush, gap,
reconnect, disconnect, applied, outdated, forged, reset, suspect, repair_keep, repair_drop.
``key`` is "" for node-wide events. Called outside the node's lock; an exception in it is
counted (``hook_errors``) and logged, never raised."""


class Hooks:
    """One node's ``events`` and ``recorder`` hooks, each call contained."""

    def __init__(
        self,
        node: str,
        events: EventHook | None,
        recorder: Recorder | None,
        timer: Callable[[], float],
        failed: Callable[[], int],
    ) -> None:
        self.node = node
        self.events = events
        self.recorder = recorder
        self.timer = timer
        self._failed = failed  # counts one failure (under the node's lock); returns the count

    def emit(self, events: Sequence[tuple[str, str, int]]) -> None:
        """Tell the events hook about each event, in order."""
        hook = self.events
        if hook is None:
            return
        for kind, key, version in events:
            try:
                hook(self.node, kind, key, version)
            except Exception:
                self._contain("events", kind)

    def record(self, op: str, key: str, start: float, version: int, hit: bool, inc: str) -> None:
        """Tell the recorder about one operation that began at ``start`` and ends now."""
        assert self.recorder is not None
        try:
            self.recorder(self.node, op, key, start, self.timer(), version, hit, inc)
        except Exception:
            self._contain("recorder", op)

    def _contain(self, which: str, what: str) -> None:
        """Count and log a hook's exception; the first at ERROR, the rest at DEBUG."""
        first = self._failed() == 1
        level = logging.ERROR if first else logging.DEBUG
        log.log(level, "%s hook of node %r failed on %s", which, self.node, what, exc_info=True)


def call_loader(loader: Callable[..., Any], key: str) -> Any:
    """Call ``loader()``, or ``loader(key)`` when it takes exactly one argument."""
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return loader()
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return loader(key) if len(required) == 1 else loader()
