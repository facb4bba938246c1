"""Faults that ``cachelab run`` injects into a live server while its nodes work.

- ``kill-pubsub``: ``CLIENT KILL TYPE pubsub``, and the stream readers by name: every
  node loses its subscription at once and must notice, reconnect and repair.
- ``pause``: ``CLIENT PAUSE <ms> ALL``. The server stalls every client for ``PAUSE_MS``
  and resumes *by itself*, so it works on any server a URL names and a runner that dies
  mid-fault leaves nothing stuck. ``ALL`` rather than ``WRITE``: reads stall too, as in a
  real stall; ``WRITE`` would let the hit and miss paths run untouched.
- ``sigstop``: SIGSTOP, ``PAUSE_MS``, SIGCONT of a private server the runner started (not
  possible through a URL): the process freezes as in a VM pause or a long fork; unlike
  ``pause``, heartbeats go unanswered, and the runner must resume it (it does, in
  ``finally``).
- ``flushall``: ``FLUSHALL`` of a private server the runner started (through a URL it
  would wipe someone's data): the counter starts again under a new incarnation, which
  every node must notice and repair from.

Every fault is injected once as the workload starts (so even a short run sees each),
then every ``every`` seconds, the faults spread evenly over the period.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis

from cachelab.harness.servers import ServerProcess

PAUSE_MS = 200
"""How long ``pause`` and ``sigstop`` stall the server, in milliseconds."""


@dataclass(frozen=True)
class Target:
    """What a fault acts on: an admin client, the server process if we started it, and
    admin clients of the other servers (a Redis Cluster's other masters)."""

    admin: redis.Redis
    server: ServerProcess | None = None
    others: tuple[redis.Redis, ...] = ()

    @property
    def admins(self) -> tuple[redis.Redis, ...]:
        """An admin client of every server."""
        return (self.admin, *self.others)


def kill_pubsub(target: Target) -> None:
    """Kill every pub/sub connection, and every stream reader (named cachelab-stream-*)."""
    for admin in target.admins:
        admin.client_kill_filter(_type="pubsub")
        for client in admin.client_list():
            if client.get("name", "").startswith("cachelab-stream-"):
                with contextlib.suppress(redis.ResponseError):  # it may be gone already
                    admin.client_kill_filter(_id=client["id"])


def pause(target: Target) -> None:
    """``CLIENT PAUSE PAUSE_MS ALL`` on every server: each resumes on its own."""
    for admin in target.admins:
        admin.client_pause(PAUSE_MS, all=True)


def sigstop(target: Target) -> None:
    """Freeze the private server for ``PAUSE_MS``, then let it go on, whatever happens."""
    if target.server is None:
        raise ValueError("sigstop needs a private server (no --url)")
    target.server.pause()
    try:
        time.sleep(PAUSE_MS / 1000)
    finally:
        target.server.resume()


def flushall(target: Target) -> None:
    """Empty every (private) server: the namespace starts again as a new incarnation."""
    if target.server is None:
        raise ValueError("flushall needs a private server (no --url)")
    for admin in target.admins:
        admin.flushall()


FAULTS: dict[str, Callable[[Target], None]] = {
    "kill-pubsub": kill_pubsub,
    "pause": pause,
    "sigstop": sigstop,
    "flushall": flushall,
}
"""Every fault by the name ``--faults`` takes."""
NEEDS_PRIVATE_SERVER = frozenset({"sigstop", "flushall"})


def parse_faults(text: str) -> tuple[str, ...]:
    """``"kill-pubsub,pause"`` -> the names, each checked; ``""`` -> none."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (choose from {', '.join(FAULTS)})")
    return names


@dataclass
class Schedule:
    """When each fault is due: at once, then at ``start`` + its slot + every ``every`` s."""

    faults: Sequence[str]
    every: float
    start: float
    injected: dict[str, int] = field(default_factory=dict)

    def due(self, now: float) -> list[str]:
        """The faults whose next time has come (each at most once per call)."""
        slot = self.every / max(1, len(self.faults))
        return [
            name
            for i, name in enumerate(self.faults)
            if now >= self.start + i * slot + self.injected.get(name, 0) * self.every
            or name not in self.injected
        ]

    def inject(self, name: str, target: Target) -> None:
        """Inject ``name`` now and count it."""
        FAULTS[name](target)
        self.injected[name] = self.injected.get(name, 0) + 1
