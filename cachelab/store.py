"""The shared store: the backend contract a node writes through, and its Redis implementation.

Layout in Redis, for namespace ``ns`` (the ``{ns}`` hash tag keeps a namespace in
one Redis Cluster slot, as the scripts need):

- ``{ns}:seq``: the global sequence number. Each write takes the next one, and it
  becomes the key's version.
- ``{ns}:k:<key>``: a hash ``{ver, val}``. A delete or invalidation keeps ``{ver}``
  alone (a marker, expiring after ``marker_ttl``), so a slow cache-aside fill can
  tell that the key changed after it read.
"""

from __future__ import annotations

from typing import Protocol

import redis

from cachelab.messages import channel

_WRITE = """
local data, op = KEYS[1], ARGV[1]
if op == 'fill' then
  local cur = redis.call('HMGET', data, 'val', 'ver')
  if cur[1] or (cur[2] and tonumber(cur[2]) > tonumber(ARGV[5])) then return 0 end
end
local seq = redis.call('INCR', KEYS[2])
if op == 'set' or op == 'fill' then
  redis.call('HSET', data, 'ver', seq, 'val', ARGV[2])
  redis.call('PERSIST', data)
else
  redis.call('DEL', data)
  redis.call('HSET', data, 'ver', seq)
  redis.call('PEXPIRE', data, ARGV[5])
end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[3] .. seq .. '}') end
return seq
"""

_READ = """
local cur = redis.call('HMGET', KEYS[1], 'val', 'ver')
if cur[1] then return {cur[1], cur[2]} end
return {'', redis.call('GET', KEYS[2]) or '0'}
"""


class Store(Protocol):
    """What a node needs from the shared store: four operations, all atomic."""

    def read(self, key: str) -> tuple[bytes | None, int]:
        """Return ``(encoded value, version)``, or ``(None, current seq)`` when absent."""
        ...

    def write(self, op: str, key: str, encoded: str, head: str | None) -> int:
        """Apply ``set``/``del``/``inv``, publish ``head + seq + '}'`` if given; return seq."""
        ...

    def fill(self, key: str, encoded: str, since: int, head: str | None) -> int:
        """Store ``encoded`` only if ``key`` holds no value and was not written after
        ``since``; return the new seq, or 0 when refused."""
        ...

    def seq(self) -> int:
        """The latest sequence number handed out."""
        ...

    def publish(self, raw: bytes) -> None:
        """Publish a raw message on the namespace's channel (used for sync markers)."""
        ...


class RedisStore:
    """The store on a Redis server (real or fakeredis): one round trip per call."""

    def __init__(self, client: redis.Redis, namespace: str, marker_ttl: float = 3600.0) -> None:
        if not marker_ttl > 0:
            raise ValueError(f"marker_ttl must be positive, not {marker_ttl!r}")
        self.client = client
        self.namespace = namespace
        self.channel = channel(namespace)
        self._seq_key = "{" + namespace + "}:seq"
        self._prefix = "{" + namespace + "}:k:"
        self._marker_ms = str(int(marker_ttl * 1000))
        self._write = client.register_script(_WRITE)
        self._read = client.register_script(_READ)
        self._write_sha = self._write.sha

    def data_key(self, key: str) -> str:
        """The Redis key that holds ``key``'s value and version."""
        return self._prefix + key

    def read(self, key: str) -> tuple[bytes | None, int]:
        """Return ``(encoded value, version)``, or ``(None, current seq)`` when absent."""
        encoded, version = self._read(keys=[self._prefix + key, self._seq_key])
        return (encoded or None), int(version)

    def write(self, op: str, key: str, encoded: str, head: str | None) -> int:
        """Apply a write atomically with its message; return its sequence number."""
        channel = self.channel if head else ""
        return self._run_write(key, op, encoded, head or "", channel, self._marker_ms)

    def fill(self, key: str, encoded: str, since: int, head: str | None) -> int:
        """Store a loaded value unless the key changed after ``since``; 0 when refused."""
        channel = self.channel if head else ""
        return self._run_write(key, "fill", encoded, head or "", channel, str(since))

    def _run_write(self, key: str, *args: str) -> int:
        """EVALSHA the write script (loading it after a server restart): one round trip.

        Called directly rather than through redis-py's Script object, whose
        bookkeeping costs about a sixth of a plain SET.
        """
        keys = (self._prefix + key, self._seq_key)
        try:
            return int(self.client.evalsha(self._write_sha, 2, *keys, *args))
        except redis.exceptions.NoScriptError:
            return int(self._write(keys=keys, args=args))

    def seq(self) -> int:
        """The latest sequence number handed out."""
        return int(self.client.get(self._seq_key) or 0)

    def publish(self, raw: bytes) -> None:
        """Publish a raw message on the namespace's channel."""
        self.client.publish(self.channel, raw)
