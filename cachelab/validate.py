"""Argument checks: a bad option fails at construction, with an error that names it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cachelab.coherence import Strategy
from cachelab.messages import MAX_KEY_CHARS


def key(value: Any) -> None:
    """Keys are non-empty strings of bounded length that UTF-8 can encode."""
    if type(value) is not str:
        raise TypeError(f"key must be str, not {type(value).__name__}")
    if not 0 < len(value) <= MAX_KEY_CHARS:
        raise ValueError(f"key must have 1 to {MAX_KEY_CHARS} characters")
    if not value.isascii():
        _encodable("key", value)


MAX_NAMESPACE = 64
"""The longest namespace a node takes, in characters."""


def name(what: str, value: Any, limit: int) -> None:
    """Names and namespaces: short, printable, and free of Redis hash-tag braces."""
    if type(value) is not str and type(value) is not StripeNamespace:
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if not 0 < len(value) <= limit or not value.isprintable() or "{" in value or "}" in value:
        raise ValueError(f"{what} must be 1 to {limit} printable characters without braces")
    _encodable(what, value)


class StripeNamespace(str):
    """A stripe's namespace, ``ns#i``: made by ``cachelab.stripes`` alone, never typed in."""


def namespace(value: Any, limit: int = MAX_NAMESPACE) -> str:
    """A namespace: a name without ``#``, which is kept for stripes, so that no plain
    namespace can be a stripe of a striped one (``users#3`` is stripe 3 of ``users``)."""
    name("namespace", value, limit)
    if "#" in value and type(value) is not StripeNamespace:
        raise ValueError(
            f"namespace must not contain '#' ({value!r}): a name 'ns#i' is stripe i of the "
            "striped namespace 'ns' (cachelab.StripedNode)"
        )
    return str(value)


def _encodable(what: str, value: str) -> None:
    """A lone surrogate cannot travel as UTF-8: refuse it here, not deep in redis-py."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} holds a lone surrogate at position {exc.start}") from None


def flag(what: str, value: Any) -> bool:
    """A switch is True or False, nothing truthy."""
    if type(value) is not bool:
        raise TypeError(f"{what} must be True or False, not {value!r}")
    return value


def seconds(what: str, value: Any, *, optional: bool = False) -> float | None:
    """A positive, finite number of seconds (or None where allowed)."""
    if value is None and optional:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or not value > 0:
        allowed = " or None" if optional else ""
        raise ValueError(f"{what} must be a positive number of seconds{allowed}, not {value!r}")
    return float(value)


def count(what: str, value: Any) -> int:
    """A positive int."""
    if type(value) is not int or value < 1:
        raise ValueError(f"{what} must be a positive int, not {value!r}")
    return value


def hook(what: str, value: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """A callable, or None."""
    if value is not None and not callable(value):
        raise TypeError(f"{what} must be callable or None, not {type(value).__name__}")
    return value


DEFAULT_STREAM_MAXLEN = 10_000


def stream_maxlen(value: Any, strategy: Strategy) -> int | None:
    """The stream cap: a positive int (10,000 by default) for the stream transport; a node
    that never listens may give one to write to a stream namespace; a pub/sub listener may not."""
    if strategy.transport == "stream":
        return DEFAULT_STREAM_MAXLEN if value is None else count("stream_maxlen", value)
    if value is None:
        return None
    if strategy.subscribes:
        raise ValueError(
            f"stream_maxlen is for strategy 'stream' (or a 'none' node writing to a stream "
            f"namespace), not {strategy.name!r}, which listens on pub/sub"
        )
    return count("stream_maxlen", value)


def store_options(marker_ttl: Any, stream_maxlen: Any) -> None:
    """A store's marker lifetime (positive seconds) and stream cap (a positive int, or None)."""
    if not marker_ttl > 0:
        raise ValueError(f"marker_ttl must be positive, not {marker_ttl!r}")
    if stream_maxlen is not None and (type(stream_maxlen) is not int or stream_maxlen < 1):
        raise ValueError(f"stream_maxlen must be a positive int or None, not {stream_maxlen!r}")


def strict(value: Any, strategy: Strategy, stream_maxlen: Any, cluster: bool, bus: Any) -> None:
    """strict=True watches one pub/sub connection: say plainly where there is none."""
    if not flag("strict", value):
        return
    if not strategy.subscribes or strategy.name == "stream" or stream_maxlen is not None:
        raise ValueError(f"strict=True needs a pub/sub strategy, not {strategy.name!r}")
    if cluster:
        raise ValueError("strict=True watches one server's pub/sub: not on a Redis Cluster")
    if bus is not None and getattr(bus, "gate", None) is None:
        raise ValueError("strict=True needs a bus with a gate (cachelab.strict.Gate)")
