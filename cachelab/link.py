"""The state of a node's link to its messages: one enum, and the moves its bus may make.

A node trusts its local copies only while its link is live (or, for the naive node with
``reconnect_flush=False``, whatever happens). The bus reports what happens to the
subscription; a report that makes no sense in the current state is a bug in the bus or
its driver, and raises ``CoreMisuse`` rather than being ignored. Once closed, the link
stays closed: a bus that is stopping may still report its last step.
"""

from __future__ import annotations

from enum import Enum

from cachelab.errors import CachelabError


class CoreMisuse(CachelabError, RuntimeError):
    """The protocol core was told of a step out of order (a driver's or a bus's bug)."""


class Link(Enum):
    """Where a node's subscription stands."""

    IDLE = "idle"  # not subscribed yet
    LIVE = "live"  # subscribed: every message reaches the node
    DOWN = "down"  # lost: messages may be missed until it is back
    REPLAYING = "replaying"  # stream: back, reading what it missed since its last entry id
    CLOSED = "closed"  # for good: the node reads through Redis only


_MOVES: dict[tuple[str, Link], Link] = {
    ("subscribed", Link.IDLE): Link.LIVE,
    ("resubscribed", Link.DOWN): Link.LIVE,
    # redis-py may reconnect and resubscribe by itself, unseen by the bus until the channels
    # are confirmed again: a resubscription with no loss reported, messages lost meanwhile.
    ("resubscribed", Link.LIVE): Link.LIVE,
    ("resumed", Link.DOWN): Link.REPLAYING,
    ("replayed", Link.REPLAYING): Link.LIVE,
    ("disconnected", Link.IDLE): Link.DOWN,
    ("disconnected", Link.LIVE): Link.DOWN,
    ("disconnected", Link.DOWN): Link.DOWN,
    ("disconnected", Link.REPLAYING): Link.DOWN,
}


def move(state: Link, event: str) -> Link:
    """The state after ``event``; ``CoreMisuse`` for a step out of order."""
    if state is Link.CLOSED or event == "closed":
        return Link.CLOSED
    try:
        return _MOVES[event, state]
    except KeyError:
        raise CoreMisuse(f"the link cannot take {event!r} while {state.value}") from None
