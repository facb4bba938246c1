"""connect(): the embedded fakeredis server, or a real Redis at a URL."""

from __future__ import annotations

import threading
import weakref
from urllib.parse import urlsplit, urlunsplit

import fakeredis
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from cachelab.auth import secret_bytes

_lock = threading.Lock()
_server: fakeredis.FakeServer | None = None
_secrets: weakref.WeakKeyDictionary[redis.Redis, bytes] = weakref.WeakKeyDictionary()


class BackendUnavailable(redis.ConnectionError):
    """The Redis server at the given URL cannot be reached."""


def embedded_server() -> fakeredis.FakeServer:
    """The process-wide fakeredis server that ``connect()`` shares."""
    global _server
    with _lock:
        if _server is None:
            _server = fakeredis.FakeServer()
        return _server


def connect(
    url: str | None = None, *, timeout: float = 10.0, secret: bytes | str | None = None
) -> redis.Redis:
    """A client of the embedded fakeredis server (``None``) or of the Redis at ``url``.

    Commands on a real server give up after ``timeout`` seconds, retried once: a node
    cut off from Redis raises ``redis.TimeoutError`` instead of hanging its caller. A
    ``secret`` here authenticates the messages of every node built on this client.
    """
    checked = None if secret is None else secret_bytes(secret)
    client = _client(url, timeout)
    if checked is not None:
        _secrets[client] = checked
    return client


def client_secret(client: redis.Redis) -> bytes | None:
    """The secret given to ``connect()`` for ``client``, if any."""
    return _secrets.get(client)


def _client(url: str | None, timeout: float) -> redis.Redis:
    """The client itself: embedded, or a checked connection to ``url``."""
    if url is None:
        return fakeredis.FakeRedis(server=embedded_server())
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
    return client


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
