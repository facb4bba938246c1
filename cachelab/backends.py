"""connect(): the embedded fakeredis server, a real Redis at a URL, or a Redis Cluster."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias, overload
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from cachelab.auth import secret_bytes
from cachelab.errors import CachelabError

if TYPE_CHECKING:  # imported where the embedded server is made: it costs numpy and lupa
    import fakeredis

_lock = threading.Lock()
_server: fakeredis.FakeServer | None = None
Client: TypeAlias = "redis.Redis | RedisCluster"
"""What ``connect()`` returns: one server's client, or a Redis Cluster's."""
_secrets: weakref.WeakKeyDictionary[Client, bytes] = weakref.WeakKeyDictionary()


class BackendUnavailable(CachelabError, redis.ConnectionError):
    """The Redis server at the given URL cannot be reached."""


def embedded_server() -> fakeredis.FakeServer:
    """The process-wide fakeredis server that ``connect()`` shares."""
    global _server
    with _lock:
        if _server is None:
            import fakeredis

            _server = fakeredis.FakeServer()
        return _server


@overload
def connect(
    url: str | None = None,
    *,
    timeout: float = 10.0,
    secret: bytes | str | None = None,
    cluster: Literal[False] = False,
) -> redis.Redis: ...


@overload
def connect(
    url: str | Sequence[str],
    *,
    timeout: float = 10.0,
    secret: bytes | str | None = None,
    cluster: Literal[True],
) -> RedisCluster: ...


@overload
def connect(
    url: list[str] | tuple[str, ...], *, timeout: float = 10.0, secret: bytes | str | None = None
) -> RedisCluster: ...


def connect(
    url: str | Sequence[str] | None = None,
    *,
    timeout: float = 10.0,
    secret: bytes | str | None = None,
    cluster: bool = False,
) -> Client:
    """A client of the Redis at ``url``, else at ``$REDIS_URL`` when it is set, else of the
    embedded fakeredis server; or of a Redis Cluster (``cluster=True`` with one node's URL,
    or a seed list of ``host:port``).

    Commands on a real server give up after ``timeout`` seconds, retried once: a node
    cut off from Redis raises ``redis.TimeoutError`` instead of hanging its caller. A
    ``secret`` here authenticates the messages of every node built on this client.
    """
    checked = None if secret is None else secret_bytes(secret)
    if url is None:
        url = os.environ.get("REDIS_URL") or None  # how notebooks and deployments say where
    client: Client
    if cluster or (url is not None and not isinstance(url, str)):
        client = _cluster_client(url, timeout)
    else:
        client = _client(url, timeout)
    if checked is not None:
        _secrets[client] = checked
    return client


def client_secret(client: Client) -> bytes | None:
    """The secret given to ``connect()`` for ``client``, if any."""
    return _secrets.get(client)


def _client(url: str | None, timeout: float) -> redis.Redis:
    """The client itself: embedded, or a checked connection to ``url``."""
    if url is None:
        server = embedded_server()
        import fakeredis  # already imported by embedded_server(): a dictionary lookup

        return fakeredis.FakeRedis(server=server)
    if not isinstance(url, str):
        raise TypeError(f"url must be a str or None, not {type(url).__name__}")
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=timeout, retry=_one_retry()
        )
    except ValueError as exc:
        raise ValueError(f"not a Redis URL: {redact(url)} ({exc})") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise BackendUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from exc
    if _clustered(client):  # a plain client would meet MOVED on most keys: say what to do instead
        client.close()
        raise ValueError(
            f"{redact(url)} is a node of a Redis Cluster: connect(url, cluster=True), "
            "or give a seed list of host:port"
        )
    return client


def _clustered(client: redis.Redis) -> bool:
    """Whether the server runs in cluster mode (a server that hides INFO is taken as not)."""
    try:
        return bool(client.info("cluster").get("cluster_enabled") == 1)
    except redis.ResponseError:
        return False


def _cluster_client(seeds: str | Sequence[str] | None, timeout: float) -> RedisCluster:
    """A checked RedisCluster client from one node's URL or a seed list of ``host:port``."""
    if seeds is None:
        raise ValueError("a Redis Cluster needs a URL or a seed list, not None")
    try:
        if isinstance(seeds, str):
            client = RedisCluster.from_url(
                seeds, socket_connect_timeout=5, socket_timeout=timeout
            )
        else:
            nodes = [_seed(seed) for seed in seeds]
            client = RedisCluster(
                startup_nodes=nodes, socket_connect_timeout=5, socket_timeout=timeout
            )
    except redis.RedisError as exc:
        shown = redact(seeds) if isinstance(seeds, str) else ", ".join(map(str, seeds))
        raise BackendUnavailable(f"cannot reach a Redis Cluster at {shown}: {exc}") from exc
    return client


def _seed(seed: str) -> ClusterNode:
    """One ``host:port`` of a seed list."""
    if not isinstance(seed, str):
        raise TypeError(f"a seed is a 'host:port' str, not {type(seed).__name__}")
    host, sep, port = seed.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"a seed is 'host:port', not {seed!r}")
    return ClusterNode(host, int(port))  # type: ignore[no-untyped-call]


def _one_retry() -> Retry:
    """Retry a failed command once, soon: a killed connection reconnects unseen, yet a
    stalled server surfaces within two timeouts (redis-py's default retries ten times)."""
    return Retry(ExponentialBackoff(cap=0.1, base=0.01), 1)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
