"""The local store on its own: LRU, TTL, floors, ordering."""

from __future__ import annotations

import pytest

from cachelab.local import LocalStore


class Clock:
    """A hand-driven clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_is_evicted_and_leaves_a_floor() -> None:
    store = LocalStore(2)
    store.fill("a", 1, 10)
    store.fill("b", 2, 11)
    assert store.get("a") == (1, 10)  # a is now the most recent
    store.fill("c", 3, 12)
    assert "b" not in store and store.evictions == 1
    assert store.floor("b") == 11
    assert not store.fill("b", "older", 5)  # the Meta bug: an old fill after eviction


def test_ttl_expires_entries_on_the_injected_clock() -> None:
    clock = Clock()
    store = LocalStore(10, ttl=2.0, timer=clock)
    store.fill("a", 1, 1)
    clock.now = 1.99
    assert store.get("a") == (1, 1)
    clock.now = 2.0
    assert store.get("a") is None
    assert "a" not in store and store.floor("a") == 1


def test_floors_expire_after_their_ttl() -> None:
    clock = Clock()
    store = LocalStore(10, timer=clock, tombstone_ttl=5.0)
    assert store.invalidate("a", 7)
    assert not store.fill("a", "old", 6)
    clock.now = 5.0
    assert store.fill("a", "old", 6)


def test_ordering_refuses_older_and_duplicate_changes() -> None:
    store = LocalStore(10)
    store.fill("a", "v5", 5)
    assert not store.invalidate("a", 5)
    assert not store.update("a", "v3", 3)
    assert not store.fill("a", "v4", 4)
    assert store.update("a", "v6", 6)
    assert store.get("a") == ("v6", 6)


def test_update_leaves_absent_keys_absent_but_raises_their_floor() -> None:
    store = LocalStore(10)
    assert store.update("a", "v2", 2)
    assert "a" not in store
    assert not store.fill("a", "v1", 1)


def test_switched_off_guards_let_old_versions_in() -> None:
    store = LocalStore(10, tombstones=False, ordering=False)
    store.fill("a", "v5", 5)
    assert store.update("a", "v3", 3)
    assert store.get("a") == ("v3", 3)
    store.invalidate("a", 9)
    assert store.fill("a", "v1", 1)


def test_flush_can_forget_floors() -> None:
    store = LocalStore(10)
    store.invalidate("a", 9)
    store.fill("b", 1, 1)
    assert store.flush() == 1
    assert store.floor("a") == 9
    store.flush(forget_floors=True)
    assert store.floor("a") == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"maxsize": 0}, {"maxsize": 1.5}, {"maxsize": 1, "ttl": 0}, {"maxsize": 1, "ttl": -1}],
)
def test_bad_sizes_and_ttls_raise_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LocalStore(**kwargs)  # type: ignore[arg-type]
