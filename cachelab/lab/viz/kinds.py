"""Every trace event kind: its colour, its label, how it is drawn, and what it means.

One table, so a new kind of node event (the protocol core keeps growing) is a one-line
addition. A kind missing from it is still drawn: as a grey marker with its own name
and detail (``kind_of``).

``role`` says how the viewer draws an event:

* ``write``: a dot from the node up to Redis, while the write is in flight;
* ``message``: a dot from Redis down to the node, while the message is in flight;
* ``lost``: the same dot, crossed out where it was lost;
* ``reply``: a read's reply travelling down to the node (misses only);
* ``mark``: a labelled marker on the node, for a moment;
* ``link``: the node's subscription went down or came back (the box is hatched);
* ``quiet``: listed in the log, not drawn (it duplicates another event).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """How one kind of event looks, and what it means (``{node}`` etc. are filled in)."""

    label: str
    color: str
    role: str
    explain: str
    safeguard: str = ""
    off: str = ""
    """The explanation in a run whose safeguard is switched off ("" when ``explain`` fits both)."""

    def is_off(self, off: Collection[str]) -> bool:
        """Whether every safeguard this kind names is switched off in the run (``off``)."""
        names = {name.strip() for name in self.safeguard.split(",") if name.strip()}
        return bool(names) and names <= set(off)

    def words(self, off: Collection[str] = ()) -> str:
        """The explanation that fits a run with the safeguards ``off`` switched off."""
        return self.off if self.off and self.is_off(off) else self.explain


_GREEN, _BLUE, _ORANGE, _RED, _PURPLE, _GREY = (
    "#2a9d4b",
    "#1f6fb4",
    "#e08a00",
    "#d62728",
    "#8e44ad",
    "#7f7f7f",
)

KINDS: dict[str, Kind] = {
    "write": Kind("write", _GREEN, "write", "Redis applied {node}'s write of {key} ({detail}): "
                  "one Lua script bumped the version to v{version}, stored it and published it."),
    "send": Kind("publish", _GREEN, "quiet", "Redis published the message of v{version} of {key}."),
    "deliver": Kind("message", _BLUE, "message", "The message for {key} v{version} reached "
                    "{node}: {outcome}"),
    "drop": Kind("lost", _RED, "lost", "The message for {key} v{version} never reached {node}: "
                 "{outcome}"),
    "read": Kind("read", _ORANGE, "reply", "{node} read {key} and got v{version} ({outcome})."),
    "stale_read": Kind("STALE READ", _RED, "reply", "{node} read {key} and got v{version}, but "
                       "a newer write had completed before the read started: the checker counts "
                       "it stale ({outcome})."),
    "fill": Kind("cached", _BLUE, "mark", "{node} cached {key} at v{version}."),
    "fill_rejected": Kind("fill rejected", _PURPLE, "mark", "{node} refused to cache {key} v"
                          "{version}: a newer change was seen while the read was in flight "
                          "(its ticket was marked), or a tombstone or a newer entry knew better.",
                          "fill_guard, tombstones, ordering"),
    "evict": Kind("evicted", _GREY, "mark", "The LRU pushed {key} v{version} out of {node}; a "
                  "tombstone remembers its version.", "tombstones",
                  "The LRU pushed {key} v{version} out of {node}. Tombstones are off in this "
                  "run, so {node} forgets that v{version} existed: a later fill of an older "
                  "version finds nothing to compare with."),
    "flush": Kind("flush", _ORANGE, "mark", "{node} dropped its whole local cache: it may have "
                  "missed messages, so nothing it holds can be trusted.",
                  "gap_detection, reconnect_flush"),
    "gap": Kind("gap", _ORANGE, "mark", "{node} saw the sequence skip to {version}: a message "
                "was lost on its way, so every entry it holds turns suspect until repair checks "
                "it (with repair off, it flushes).", "gap_detection"),
    "disconnect": Kind("disconnected", _RED, "link", "{node}'s subscription dropped and it was "
                       "told: it trusts nothing it holds and caches nothing until it is back.",
                       "reconnect_flush"),
    "reconnect": Kind("reconnected", _GREEN, "link", "{node} resubscribed; what it holds is "
                      "checked against Redis, since messages may have been lost meanwhile.",
                      "reconnect_flush"),
    "partition": Kind("partition", _RED, "link", "{node}'s subscription was {outcome}."),
    "heal": Kind("healed", _GREEN, "link", "{node} is reconnected to the messages."),
    "crash": Kind("crash", _RED, "link", "{node} died with its cache and its reads in flight."),
    "restart": Kind("restart", _GREEN, "link", "{node} came back with an empty cache."),
    "redis_restart": Kind("Redis restart", _RED, "mark", "Redis lost every key and its "
                          "sequence counter; every subscriber is disconnected."),
    "garbage": Kind("garbage", _PURPLE, "mark", "Bytes that are not a message reached {node} "
                    "({detail}); they are counted and dropped.", "strict wire format"),
    "db_write": Kind("db write", _GREEN, "mark", "{node} wrote {key} v{version} to the database."),
    "db_load": Kind("db read", _ORANGE, "mark", "{node} read {key} from the database."),
    "lease": Kind("lease wait", _PURPLE, "mark", "{node} was refused the lease on {key}: another "
                  "node is loading it; this read retries Redis shortly.", "lease"),
    "applied": Kind("applied", _BLUE, "mark", "{node} applied the change of {key} to v{version}."),
    "outdated": Kind("outdated", _GREY, "mark", "{node} ignored a message for {key} v{version}: "
                     "it already knew a newer version.", "ordering"),
    "suspect": Kind("suspect", _ORANGE, "mark", "{node} stopped trusting its entries (of v"
                    "{version} and newer; v0: all of them) until repair checks them against "
                    "Redis; meanwhile they are not served.", "repair"),
    "repair_keep": Kind("repair: kept", _GREEN, "mark", "Repair found {key} unchanged in Redis: "
                        "{node} trusts it again, at v{version}, without reloading it.", "repair"),
    "repair_drop": Kind("repair: dropped", _ORANGE, "mark", "Repair found {key} changed in Redis "
                        "(v{version}): {node} dropped its copy.", "repair"),
    "restore": Kind("restored", _GREEN, "mark", "{node} read the stream on from its last "
                    "entry after the reconnect and found no gap: every message it missed was "
                    "applied, so it trusts what it held again, with no round trip to Redis.",
                    "stream replay"),
    "reset": Kind("reset", _RED, "mark", "{node} found Redis's counter started again (a new "
                  "incarnation): versions restart, so it forgets its tombstones and repairs.",
                  "incarnations"),
    "forged": Kind("forged", _PURPLE, "mark", "{node} refused a message for {key} (v{version}): "
                   "a wrong tag, or a number or incarnation the store never issued.",
                   "sequence checks, authenticated messages"),
}
"""Every known kind of trace event."""

OUTCOMES: dict[str, str] = {
    "applied": "applied: it dropped its copy (invalidate) or took the new value (update).",
    "outdated": "ignored: the strategy did not apply it (normally because the node already "
    "knew a newer version).",
    "ignored": "ignored: the answer's apply returned False, so the node changed nothing.",
    "own": "own: its own write coming back; it already holds that version, so nothing changes "
    "(were its write's reply lost, this is what would tell it).",
    "loss": "the network lost it.",
    "partition": "its subscription was cut silently (a half-open connection): nothing told it.",
    "disconnected": "its connection was down, and it knew.",
    "down": "the node had crashed.",
    "dropped": "lost on purpose (the panel's 'drop next message').",
    "hit": "a hit: served from the local cache",
    "miss": "a miss: loaded from Redis",
    "joined": "joined a load already in flight (single flight)",
    "start": "cut silently: no error, no message",
    "heal": "healed: messages flow again, though nothing tells the node what it missed",
}
"""What an event's ``detail`` (or its ``op:outcome`` suffix) means, in words."""


def kind_of(name: str) -> Kind:
    """The kind called ``name``; an unknown one is a grey marker named after itself."""
    known = KINDS.get(name)
    if known is not None:
        return known
    label = name.replace("_", " ")
    return Kind(label, _GREY, "mark", "{node}: a '" + name + "' event ({detail}).")


def outcome(detail: str) -> str:
    """The words for a detail such as ``set:own``, ``loss`` or ``hit``."""
    suffix = detail.rsplit(":", 1)[-1]
    return OUTCOMES.get(suffix, detail or "no detail")
