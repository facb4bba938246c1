"""Bad input fails loudly and early, with errors that say what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import cachelab
from cachelab import CacheNode, Cluster
from tests.helpers import NodeFactory


@pytest.mark.parametrize(("value", "name"), [(object(), "object"), ((1,), "tuple"), ({1}, "set")])
def test_set_rejects_unsupported_values_naming_the_type(
    make_node: NodeFactory, value: Any, name: str
) -> None:
    node = make_node()
    with pytest.raises(TypeError, match=name):
        node.set("k", value)
    assert node.get("k") is None  # nothing was written


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (1, TypeError),
        (b"k", TypeError),
        ("", ValueError),
        ("x" * 5000, ValueError),
        ("user:\ud800", ValueError),  # a lone surrogate: UTF-8 cannot carry it
    ],
)
def test_bad_keys_are_refused_by_every_operation(
    make_node: NodeFactory, key: Any, error: type[Exception]
) -> None:
    node = make_node()
    for call in (
        node.get,
        node.delete,
        node.invalidate,
        lambda k: node.set(k, 1),
        lambda k: node.get_or_load(k, lambda: 1),
    ):
        with pytest.raises(error, match="key"):
            call(key)


@pytest.mark.parametrize(
    "options",
    [
        {"max_entries": 0},
        {"max_entries": -1},
        {"ttl": 0},
        {"ttl": -5},
        {"strategy": "bogus"},
        {"name": ""},
        {"namespace": "a{b}"},
        {"tombstone_ttl": 0},
        {"ttl": "5"},
        {"ttl": float("nan")},
        {"ttl": True},
        {"heartbeat": "1"},
        {"heartbeat": 0},
        {"max_entries": True},
        {"max_entries": 2.0},
        {"repair_batch": 0},
        {"name": "a\udc80"},
    ],
)
def test_bad_node_options_raise_value_error(client: redis.Redis, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CacheNode(client, **{"namespace": "opts", **options})
    assert client.keys("{opts}*") == []  # refused before anything reached Redis


@pytest.mark.parametrize(
    "switch",
    [
        "fill_guard",
        "ordering",
        "tombstones",
        "gap_detection",
        "reconnect_flush",
        "negative_cache",
        "repair",
    ],
)
@pytest.mark.parametrize("value", ["no", 0, None])
def test_switches_must_be_true_or_false(client: redis.Redis, switch: str, value: Any) -> None:
    with pytest.raises(TypeError, match=switch):
        CacheNode(client, namespace="opts", **{switch: value})
    assert client.keys("{opts}*") == []


def test_the_strategy_error_lists_the_choices(client: redis.Redis) -> None:
    with pytest.raises(ValueError, match="invalidate"):
        CacheNode(client, strategy="tracking-soon")


@pytest.mark.parametrize("loader", ["not a function", None])
def test_a_loader_must_be_callable(make_node: NodeFactory, loader: Any) -> None:
    node = make_node()
    with pytest.raises(TypeError, match="callable"):
        node.get_or_load("k", loader)
    node.get("k")  # a cached absence must not turn a None loader into a value
    with pytest.raises(TypeError, match="callable"):
        node.get_or_load("k", loader)


def test_cluster_needs_a_positive_size() -> None:
    with pytest.raises(ValueError):
        Cluster(0)


def test_connect_names_the_unreachable_url_and_hides_the_password() -> None:
    with pytest.raises(cachelab.BackendUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0"):
        cachelab.connect("redis://:secret@127.0.0.1:1/0")


def test_connect_rejects_what_is_not_a_redis_url() -> None:
    with pytest.raises(ValueError, match="not a Redis URL"):
        cachelab.connect("http://example.invalid")


def test_connect_without_a_url_shares_one_embedded_server() -> None:
    cachelab.connect().set("shared-check", b"1")
    assert cachelab.connect().get("shared-check") == b"1"
    cachelab.connect().delete("shared-check")


def test_strategies_are_listed() -> None:
    assert {"none", "invalidate", "update"} <= set(cachelab.STRATEGIES)


def test_a_node_needs_a_redis_client_not_a_url() -> None:
    with pytest.raises(TypeError, match=r"cachelab\.connect"):
        CacheNode("redis://localhost:6379/0")  # type: ignore[arg-type]


@pytest.mark.real_redis
def test_a_cluster_closes_the_client_it_opened(real_client: redis.Redis) -> None:
    kwargs = real_client.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/0"

    def connections() -> int:
        return sum(1 for c in real_client.client_list() if c["name"] != "observer")

    real_client.client_setname("observer")
    before = connections()
    with Cluster(2, url=url) as cluster:
        cluster.nodes[0].set("k", 1)
        assert cluster.nodes[1].get("k") == 1
        assert connections() > before
    assert connections() == before
