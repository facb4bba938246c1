"""One limit on both sides: what set() accepts, every peer decodes; what it refuses, it
refuses clearly."""

from __future__ import annotations

from typing import Any

import pytest

from cachelab import messages
from tests.helpers import NodeFactory, settle


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("strategy", ["invalidate", "update"])
def test_a_value_too_large_to_ride_in_a_message_still_reaches_every_peer(
    make_node: NodeFactory, strategy: str
) -> None:
    a, b = make_node("a", strategy=strategy), make_node("b", strategy=strategy)
    a.set("k", "small")
    assert b.get("k") == "small"
    big = "x" * messages.MAX_MESSAGE_BYTES  # fine as a value, too big for a message
    a.set("k", big)
    settle(a, b)
    assert b.stats.messages_invalid == 0
    assert b.get("k") == big


def test_update_carries_values_that_fit_and_invalidates_for_those_that_do_not(
    make_node: NodeFactory,
) -> None:
    a, b = make_node("a", strategy="update"), make_node("b", strategy="update")
    a.set("k", "v0")
    assert b.get("k") == "v0"
    misses = b.stats.misses
    a.set("k", "y" * 1000)
    settle(a, b)
    assert b.get("k") == "y" * 1000 and b.stats.misses == misses  # rode along: no reload
    a.set("k", "z" * messages.MAX_MESSAGE_BYTES)
    settle(a, b)
    assert b.get("k") == "z" * messages.MAX_MESSAGE_BYTES and b.stats.misses == misses + 1


def test_a_value_over_the_value_limit_is_refused_before_anything_is_written(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_node("a")
    monkeypatch.setattr(messages, "MAX_VALUE_BYTES", 1000)
    with pytest.raises(ValueError, match="over 1000"):
        a.set("k", "x" * 2000)
    assert a.get("k") is None


@pytest.mark.parametrize("strategy", ["invalidate", "update"])
def test_the_deepest_value_set_accepts_reaches_every_peer(
    make_node: NodeFactory, strategy: str
) -> None:
    a, b = make_node("a", strategy=strategy), make_node("b", strategy=strategy)
    deepest = _nested(messages.MAX_DEPTH)
    a.set("k", "before")
    assert b.get("k") == "before"
    a.set("k", deepest)
    settle(a, b)
    assert b.stats.messages_invalid == 0
    assert b.get("k") == deepest


@pytest.mark.parametrize("depth", [messages.MAX_DEPTH + 1, 990, 995, 5000])
def test_a_value_nested_deeper_is_refused_with_a_clear_error(
    make_node: NodeFactory, depth: int
) -> None:
    a = make_node("a")
    with pytest.raises(ValueError, match=f"deeper than {messages.MAX_DEPTH}"):
        a.set("k", _nested(depth))
    assert a.get("k") is None
