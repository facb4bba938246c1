"""What a write costs one Redis server's CPU: the fleet model's figures, and how to measure them.

A ``Calibration`` holds four costs in microseconds of server CPU: a PUBLISH (or any one
command's dispatch), each delivery of a message to one subscriber, the extra of
cachelab's write script over a bare PUBLISH, and each tracking invalidation sent to one
client. ``Calibration.load`` reads them from ``cachelab/sim/scaling.json`` (written by the
scaling benchmark); ``measure`` takes them live from a server, from ``INFO cpu``;
``FALLBACK`` is a committed measurement, for when neither is at hand.
"""

from __future__ import annotations

import json
import math
import secrets
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

SCALING_JSON = Path(__file__).resolve().parent / "scaling.json"
"""Where the scaling benchmark writes its measurements (in a source checkout)."""

_COSTS = ("publish_us", "delivery_us", "script_us", "tracking_us")


@dataclass(frozen=True)
class Calibration:
    """Server CPU per operation, in microseconds, and where the figures come from."""

    publish_us: float
    delivery_us: float
    script_us: float = 0.0
    tracking_us: float | None = None  # None: as a pub/sub delivery (RESP2 redirects are one)
    source: str = "explicit values"
    measured: str = ""

    def __post_init__(self) -> None:
        if self.tracking_us is None:
            object.__setattr__(self, "tracking_us", self.delivery_us)
        for name in _COSTS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"Calibration.{name} must be a finite number >= 0, not {value!r}")

    @property
    def invalidation_us(self) -> float:
        """The cost of one tracking invalidation (never None once built)."""
        return float(self.tracking_us or 0.0)

    @classmethod
    def load(cls, path: str | Path = SCALING_JSON) -> Calibration:
        """The calibration of a scaling.json file (its ``calibration`` object)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        figures = data.get("calibration") if isinstance(data, dict) else None
        if not isinstance(figures, dict):
            raise ValueError(f"{path}: no 'calibration' object")
        missing = [name for name in _COSTS[:3] if name not in figures]
        if missing:
            raise ValueError(f"{path}: calibration lacks {', '.join(missing)}")
        return cls(**{name: figures[name] for name in _COSTS if name in figures},
                   source=_provenance(path, data, figures), measured=str(data.get("measured", "")))

    def describe(self) -> str:
        """One line: the figures and their provenance."""
        return (f"publish {self.publish_us:.2f} us, delivery {self.delivery_us:.3f} us, "
                f"script +{self.script_us:.2f} us, tracking invalidation "
                f"{self.invalidation_us:.3f} us; {self.source}"
                + (f", measured {self.measured}" if self.measured else ""))


def _provenance(path: str | Path, data: dict[str, Any], figures: dict[str, Any]) -> str:
    """Where a loaded calibration comes from, in words."""
    server = data.get("server", "an unnamed server")
    cores = data.get("cores", "?")
    how = figures.get("how", "")
    return f"{Path(path).name} ({server}, {cores} cores{'; ' + how if how else ''})"


FALLBACK = Calibration(
    publish_us=10.3,
    delivery_us=1.13,
    script_us=27.5,
    source=(
        "committed fallback: the medians of 7 runs of measure(publishes=3000, subscribers=8, "
        "rounds=1) "
        "on a private redis-server 7.0.15, 2-core development machine (run to run: publish "
        "6.9-20 us, delivery 0.49-1.27 us, script 21-40 us)"
    ),
    measured="2026-11-27",
)
"""A measurement committed with the code, used when there is no scaling.json and no server."""


def default(path: str | Path = SCALING_JSON) -> Calibration:
    """``cachelab/sim/scaling.json`` when it exists, else ``FALLBACK``."""
    return Calibration.load(path) if Path(path).exists() else FALLBACK


# -- measuring a live server -------------------------------------------------------


def server_cpu(client: redis.Redis) -> float:
    """The server's CPU seconds so far (user + system, from ``INFO cpu``)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _repeat(times: int, call: Callable[..., Any], *args: Any) -> None:
    """``call(*args)`` ``times`` times: one round trip each."""
    for _ in range(times):
        call(*args)


def _cpu_of(client: redis.Redis, work: Callable[[], Any], idle: float) -> float:
    """Server CPU seconds that ``work()`` took, less the cost of reading the counter."""
    before = server_cpu(client)
    work()
    return max(0.0, server_cpu(client) - before - idle)


def _idle(client: redis.Redis, rounds: int = 5) -> float:
    """What one reading of the CPU counter costs the server (the least of a few)."""
    return min(_cpu_of(client, lambda: None, 0.0) for _ in range(rounds))


def measure(
    client: redis.Redis, *, publishes: int = 300, subscribers: int = 8, rounds: int = 3
) -> Calibration:
    """Measure a live server from ``INFO cpu``: ``publishes`` PUBLISHes to no listener and to
    ``subscribers`` listeners, then as many cachelab writes; each the median of ``rounds``.

    The runs touch nothing else: a random channel and namespace, whose keys are deleted
    afterwards (nothing is flushed). Other clients' traffic on the server inflates the
    figures; a noisy server can make a difference come out 0 (it is never negative).
    """
    for name, value in (("publishes", publishes), ("subscribers", subscribers),
                        ("rounds", rounds)):
        if type(value) is not int or value < 1:
            raise ValueError(f"{name} must be a positive int, not {value!r}")
    idle = _idle(client)
    runs = [_round(client, publishes, subscribers, idle) for _ in range(rounds)]
    bare, fanned, script = (statistics.median(column) for column in zip(*runs, strict=True))
    return Calibration(
        publish_us=bare * 1e6,
        delivery_us=max(0.0, (fanned - bare) / subscribers) * 1e6,
        script_us=max(0.0, script - fanned) * 1e6,
        source=f"live: measure(publishes={publishes}, subscribers={subscribers}, "
               f"rounds={rounds}) on {_server_name(client)}",
    )


def _round(
    client: redis.Redis, publishes: int, subscribers: int, idle: float
) -> tuple[float, float, float]:
    """Server seconds per bare PUBLISH, per PUBLISH to the listeners, per cachelab write."""
    return (_publish_cost(client, publishes, 0, idle),
            _publish_cost(client, publishes, subscribers, idle),
            _script_cost(client, publishes, subscribers, idle))


def _server_name(client: redis.Redis) -> str:
    """``redis 7.0.15`` or ``valkey 8.1.1``, from ``INFO server``."""
    info = client.info("server")
    if "valkey_version" in info:
        return f"valkey {info['valkey_version']}"
    return f"redis {info.get('redis_version', '?')}"


def _publish_cost(client: redis.Redis, publishes: int, subscribers: int, idle: float) -> float:
    """Server CPU seconds per PUBLISH to ``subscribers`` listeners (one round trip each)."""
    channel = "cachelab-calibrate:" + secrets.token_hex(6)
    listeners = [client.pubsub() for _ in range(subscribers)]
    try:
        for listener in listeners:
            listener.subscribe(channel)
            listener.get_message(timeout=1.0)  # the subscribe confirmation
        spent = _cpu_of(client, lambda: _repeat(publishes, client.publish, channel, "x" * 64), idle)
    finally:
        for listener in listeners:
            listener.close()
    return spent / publishes


def _script_cost(client: redis.Redis, writes: int, subscribers: int, idle: float) -> float:
    """Server CPU seconds per cachelab write (script + publish to ``subscribers`` listeners)."""
    from cachelab.node import CacheNode  # the node imports the simulator's neighbours

    namespace = "cachelab-calibrate-" + secrets.token_hex(6)
    # the node itself is one listener
    extra = [client.pubsub() for _ in range(subscribers - 1)]
    node = CacheNode(client, name="calibrate", namespace=namespace, strategy="invalidate",
                     heartbeat=None)
    try:
        for listener in extra:
            listener.subscribe("{" + namespace + "}:bus")
            listener.get_message(timeout=1.0)
        spent = _cpu_of(client, lambda: _repeat(writes, node.set, "k", "x" * 32), idle)
    finally:
        node.close()
        for listener in extra:
            listener.close()
        _delete(client, "{" + namespace + "}:*")
    return spent / writes


def _delete(client: redis.Redis, pattern: str) -> None:
    """Delete the keys matching ``pattern`` (a SCAN: never blocks a shared server)."""
    keys = list(client.scan_iter(match=pattern, count=100))
    if keys:
        client.delete(*keys)
