"""What a bus calls on a node: a private adapter, so that no user can call it by mistake.

A bus hands over raw messages and what happens to its subscription. The adapter decodes
each message (a bad one is counted, logged once per kind and dropped, never raised into
the bus's thread or task) and has the node's driver run the rest. One adapter serves both
drivers: on the asyncio one each call returns what the bus awaits.
"""

from __future__ import annotations

from typing import Any

from cachelab.auth import Signer
from cachelab.contract import Meta
from cachelab.messages import InvalidMessage, decode
from cachelab.phases import Phases
from cachelab.shell import RefusalLog


class NodeListener:
    """The ``bus.Listener`` (or ``async_bus.AsyncListener``) of one node."""

    def __init__(
        self, driver: Phases, namespace: str, signer: Signer | None, refusals: RefusalLog
    ) -> None:
        self.driver = driver
        self.namespace = namespace
        self.signer = signer
        self.refusals = refusals

    def receive(self, raw: bytes) -> Any:
        """Decode and handle one raw message; a bad one is counted and dropped."""
        try:
            msg = decode(raw, self.namespace, self.signer)
        except InvalidMessage as exc:
            self.refusals.once(exc)
            return self.driver.invalid(exc)
        return self.driver.handle(msg)

    def subscribed(self, first: bool, meta: Meta | None = None) -> Any:
        """(Re)subscribed; ``meta`` when the bus read it with its position."""
        return self.driver.subscribed(first, meta)

    def replayed(self) -> Any:
        """Stream: the replay after a reconnect caught up."""
        return self.driver.replayed()

    def disconnected(self) -> None:
        """The subscription is down (synchronous on either driver)."""
        self.driver.disconnected()

    def doubting(self) -> bool:
        """Whether a claimed gap waits for a marker."""
        return bool(self.driver.core.seq.doubted)

    def maintain(self) -> Any:
        """Between messages: finish any repair still owed."""
        return self.driver.repair()

    def send_beat(self, beat_channel: str, token: str) -> Any:
        """Publish a heartbeat that carries the store's (incarnation, seq)."""
        return self.driver.send_beat(beat_channel, token)


def listener_of(node: object) -> NodeListener:
    """What a node's bus calls (the simulator and the tests deliver through it)."""
    listener: NodeListener = getattr(node, "_listener")  # noqa: B009
    return listener
