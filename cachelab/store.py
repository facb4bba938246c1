"""The shared store: the backend contract a node writes through, and its Redis implementation.

Layout in Redis, for namespace ``ns`` (the ``{ns}`` hash tag keeps a namespace in
one Redis Cluster slot, as the scripts need):

- ``{ns}:meta``: a hash ``{inc, seq[, auth][, stream]}``, or ``{striped}`` alone for a
  namespace striped over that many stripes (``cachelab.stripes``). ``seq`` is the sequence number:
  each write takes the next one, and it becomes the key's version. ``inc`` is the
  incarnation: a token every script creates when the hash is absent. Both live in one
  key on purpose: whatever loses one (FLUSHALL, eviction, a restart without
  persistence) loses both, so a counter that starts again always comes with a new
  incarnation. ``auth`` is the key id of an authenticated namespace; ``stream`` the cap
  of a namespace whose messages go to a stream instead of the channel.
- ``{ns}:k:<key>``: a hash ``{ver, val, inc}``. A delete or invalidation keeps
  ``{ver, inc}`` alone (a marker, expiring after ``marker_ttl``), so a slow cache-aside
  fill can tell that the key changed after it read. A value found under another
  incarnation (it outlived its sequence number) is given version 0 of the current one.
- ``{ns}:stream``: with ``stream_maxlen``, a stream capped at about that many entries
  (``XADD MAXLEN ~``), each ``{m: <the message>}``: the very bytes pub/sub would carry.
  Every message of such a namespace, markers included, goes there and not to the channel.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis
import redis.asyncio
from redis.cluster import RedisCluster

from cachelab import validate
from cachelab.auth import AuthenticationMismatch, Signer
from cachelab.contract import (
    KeyState,
    Meta,
    Position,
    Reply,
    Stamp,
    StripeMismatch,
    TransportMismatch,
)
from cachelab.messages import channel

# Every script: ARGV[1] is the caller's nonce (part of any incarnation it creates), ARGV[2]
# the incarnation the caller knows. A script's own arguments follow, the last of them the
# stream cap ('' on a pub/sub namespace); on an authenticated namespace the key id and the
# key's two HMAC pads come last. A message goes ``to`` the channel, or to the stream key
# (declared in KEYS) when there is a cap; '' sends none. A stamp is returned as a bare
# number while the incarnation is the one the caller knows (the common case: no array to
# build and parse), else as {seq, inc}.
_PRELUDE = """
local PUBLISH = 'PUBLISH'
local function create_meta(key, inc, auth, cap)
  redis.call('HSET', key, 'inc', inc, 'seq', 0)
  if auth ~= '' then redis.call('HSET', key, 'auth', auth) end
  if cap ~= '' then redis.call('HSET', key, 'stream', cap) end
end

-- With ``later``, an absent meta is not created here: the caller creates it (create_meta)
-- once nothing can fail any more, and is told so by the fourth result.
local function meta_of(key, auth, cap, later)
  local m = redis.call('HMGET', key, 'inc', 'seq', 'auth', 'stream', 'striped')
  if m[5] then
    return nil, nil, 'cachelab-stripes: the namespace is striped over ' .. m[5] .. ' stripes'
  end
  if not m[1] then
    local t = redis.call('TIME')
    local inc = t[1] .. '.' .. t[2] .. '-' .. ARGV[1]
    if not later then create_meta(key, inc, auth, cap) end
    return inc, 0, nil, true
  end
  local capped = m[4] or ''
  if capped ~= cap then
    if capped == '' then return nil, nil, 'cachelab-transport: the namespace uses pub/sub' end
    return nil, nil, 'cachelab-transport: the namespace streams with stream_maxlen=' .. capped
  end
  local have = m[3] or ''
  if have == auth then return m[1], tonumber(m[2]), nil end
  if auth == '' then return nil, nil, 'cachelab-auth: the namespace is authenticated' end
  if have == '' then return nil, nil, 'cachelab-auth: the namespace is not authenticated' end
  return nil, nil, 'cachelab-auth: the namespace is authenticated with another secret'
end

local function publish(to, head, inc, seq, ipad, opad, cap)
  if to == '' then return end
  local body = head .. '"inc":"' .. inc .. '","seq":' .. string.format('%d', seq)
  if ipad ~= '' then
    local inner = redis.sha1hex(ipad .. body)
    inner = inner:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end)
    body = body .. ',"mac":"' .. redis.sha1hex(opad .. inner) .. '"}'
  else
    body = body .. '}'
  end
  if cap == '' then
    redis.call(PUBLISH, to, body)
    return
  end
  local ok, e = pcall(redis.call, 'XADD', to, 'MAXLEN', '~', cap, '*', 'm', body)
  if ok then return end
  local why = type(e) == 'table' and e.err or tostring(e)
  if not (why:find('WRONGTYPE', 1, true) or why:find('last possible ID', 1, true)) then
    error(e)  -- an OOM, say: refused before any write, so nothing changed
  end
  -- Our stream refuses entries for good (an outsider's entry holds the last possible id,
  -- or the key is not a stream): start it again. A reader finds its end behind its own
  -- position, reads on from there and repairs the gap.
  redis.call('DEL', to)
  redis.call('XADD', to, 'MAXLEN', '~', cap, '*', 'm', body)
end

-- A write tells its listeners and takes effect, or changes nothing. A stream entry is a
-- write, so it goes first: the one write that may be refused (OOM) is then the first
-- (Redis refuses a script's first write only). PUBLISH, which nothing refuses, goes last.
local function tell(first, to, head, inc, seq, ipad, opad, cap)
  if first == (cap ~= '') then publish(to, head, inc, seq, ipad, opad, cap) end
end

local function stamp(seq, inc)
  if inc == ARGV[2] then return seq end
  return {seq, inc}
end
"""

# KEYS: data, meta[, stream]. ARGV: nonce, known, op, value, head, to, marker ms, cap
# [, auth x3].
_WRITE = (
    _PRELUDE
    + """
local data, op = KEYS[1], ARGV[3]
local inc, seq, err, fresh = meta_of(KEYS[2], ARGV[9] or '', ARGV[8], true)
if err then return redis.error_reply(err) end
seq = seq + 1
tell(true, ARGV[6], ARGV[5], inc, seq, ARGV[10] or '', ARGV[11] or '', ARGV[8])
if fresh then create_meta(KEYS[2], inc, ARGV[9] or '', ARGV[8]) end
redis.call('HSET', KEYS[2], 'seq', seq)
if op == 'set' then
  -- DEL first: every field is written again, any expiry goes, and a key an outsider made
  -- a string cannot fail the HSET after the message was told and the counter moved
  redis.call('DEL', data)
  redis.call('HSET', data, 'ver', seq, 'val', ARGV[4], 'inc', inc)
else
  redis.call('DEL', data)
  redis.call('HSET', data, 'ver', seq, 'inc', inc)
  redis.call('PEXPIRE', data, ARGV[7])
end
tell(false, ARGV[6], ARGV[5], inc, seq, ARGV[10] or '', ARGV[11] or '', ARGV[8])
return stamp(seq, inc)
"""
)

# KEYS: data, meta[, stream]. ARGV: nonce, known, value, head, to, since, since's inc, cap
# [, auth x3].
_FILL = (
    _PRELUDE
    + """
local data = KEYS[1]
local inc, seq, err = meta_of(KEYS[2], ARGV[9] or '', ARGV[8])
if err then return redis.error_reply(err) end
if ARGV[7] ~= inc then return stamp(0, inc) end
local cur = redis.call('HMGET', data, 'val', 'ver', 'inc')
if cur[1] or (cur[3] == inc and tonumber(cur[2]) > tonumber(ARGV[6])) then
  return stamp(0, inc)
end
seq = seq + 1
tell(true, ARGV[5], ARGV[4], inc, seq, ARGV[10] or '', ARGV[11] or '', ARGV[8])
redis.call('HSET', KEYS[2], 'seq', seq)
redis.call('HSET', data, 'ver', seq, 'val', ARGV[3], 'inc', inc)
redis.call('PERSIST', data)
tell(false, ARGV[5], ARGV[4], inc, seq, ARGV[10] or '', ARGV[11] or '', ARGV[8])
return stamp(seq, inc)
"""
)

# KEYS: data, meta. ARGV: nonce, known, cap [, key id]. Returns {val | '', ver, seq[, inc]}.
_READ = (
    _PRELUDE
    + """
local inc, seq, err = meta_of(KEYS[2], ARGV[4] or '', ARGV[3])
if err then return redis.error_reply(err) end
local cur = redis.call('HMGET', KEYS[1], 'val', 'ver', 'inc')
local val, ver = cur[1] or '', seq
if cur[1] then
  ver = tonumber(cur[2])
  if cur[3] ~= inc then
    redis.call('HSET', KEYS[1], 'ver', 0, 'inc', inc)
    ver = 0
  end
end
if inc == ARGV[2] then return {val, ver, seq} end
return {val, ver, seq, inc}
"""
)

# KEYS: meta, data... ARGV: nonce, known, cap [, key id]. Returns {inc, seq, ver, sha1, ...}.
_CHECK = (
    _PRELUDE
    + """
local inc, seq, err = meta_of(KEYS[1], ARGV[4] or '', ARGV[3])
if err then return redis.error_reply(err) end
local out = {inc, seq}
for i = 2, #KEYS do
  local cur = redis.call('HMGET', KEYS[i], 'val', 'ver', 'inc')
  if cur[1] then
    local ver = tonumber(cur[2])
    if cur[3] ~= inc then
      redis.call('HSET', KEYS[i], 'ver', 0, 'inc', inc)
      ver = 0
    end
    out[#out + 1] = ver
    out[#out + 1] = redis.sha1hex(cur[1])
  else
    out[#out + 1] = seq
    out[#out + 1] = ''
  end
end
return out
"""
)

# KEYS: meta[, stream]. ARGV: nonce, known, to, head, cap [, auth x3].
_MARK = (
    _PRELUDE
    + """
local inc, seq, err, fresh = meta_of(KEYS[1], ARGV[6] or '', ARGV[5], true)
if err then return redis.error_reply(err) end
tell(true, ARGV[3], ARGV[4], inc, seq, ARGV[7] or '', ARGV[8] or '', ARGV[5])
if fresh then create_meta(KEYS[1], inc, ARGV[6] or '', ARGV[5]) end
tell(false, ARGV[3], ARGV[4], inc, seq, ARGV[7] or '', ARGV[8] or '', ARGV[5])
return stamp(seq, inc)
"""
)

# KEYS: meta, stream. ARGV: nonce, known, cap [, key id]. Returns {inc, seq, last entry id}.
_POSITION = (
    _PRELUDE
    + """
local inc, seq, err = meta_of(KEYS[1], ARGV[4] or '', ARGV[3])
if err then return redis.error_reply(err) end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then return {inc, seq, last[1][1]} end
return {inc, seq, '0-0'}
"""
)

_SCRIPTS = {
    "write": _WRITE,
    "fill": _FILL,
    "read": _READ,
    "check": _CHECK,
    "mark": _MARK,
    "position": _POSITION,
}
# On a Redis Cluster a message goes by sharded pub/sub: only the shard that owns the
# namespace's slot (its hash tag) delivers it, instead of every node of the cluster.
_SHARDED = {
    name: text.replace("local PUBLISH = 'PUBLISH'", "local PUBLISH = 'SPUBLISH'", 1)
    for name, text in _SCRIPTS.items()
}


class Call(NamedTuple):
    """One script run: its name, KEYS, the whole ARGV, and the incarnation it tells the script."""

    script: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    known: str


class ScriptCalls:
    """What a Redis store says to its scripts and makes of their replies, with no client.

    ``RedisStore`` runs these calls on a redis-py client, ``AsyncRedisStore`` awaits them
    on a ``redis.asyncio`` one: the arguments, the replies and the incarnation a store
    knows are built once, here.
    """

    def __init__(
        self,
        namespace: str,
        *,
        signer: Signer | None = None,
        marker_ttl: float = 3600.0,
        stream_maxlen: int | None = None,
    ) -> None:
        validate.store_options(marker_ttl, stream_maxlen)
        self.namespace = namespace
        self.channel = channel(namespace)
        self.meta_key = "{" + namespace + "}:meta"
        self.stream_key = "{" + namespace + "}:stream"
        self.stream_maxlen = stream_maxlen
        self._prefix = "{" + namespace + "}:k:"
        self._marker_ms = str(int(marker_ttl * 1000))
        self._cap = "" if stream_maxlen is None else str(stream_maxlen)
        self._to = self.channel if stream_maxlen is None else self.stream_key  # where messages go
        self._streams = () if stream_maxlen is None else (self.stream_key,)  # a KEYS tail
        self._auth = (signer.key_id, signer.ipad, signer.opad) if signer else ()
        self._nonce = secrets.token_hex(4)  # part of any incarnation this store creates
        self._known = ""  # the last incarnation a reply named

    def _call(self, name: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Call:
        """A run of script ``name``, telling it the incarnation known now (callers share
        the store, so each call keeps the one it told)."""
        known = self._known
        return Call(name, keys, (self._nonce, known, *args), known)

    def read_call(self, key: str) -> Call:
        """Read ``key``."""
        return self._call("read", (self._prefix + key, self.meta_key), (self._cap, *self._auth[:1]))

    def read_reply(self, out: Any, call: Call) -> Reply:
        """The read's reply: absent keys read as ``(None, current seq)``."""
        inc = self._learn(out[3]) if len(out) > 3 else call.known
        return Reply(out[0] or None, int(out[1]), inc, int(out[2]))

    def write_call(self, op: str, key: str, encoded: str, head: str | None) -> Call:
        """Apply ``set``/``del``/``inv`` and publish ``head`` + tail if given."""
        to = self._to if head else ""
        args = (op, encoded, head or "", to, self._marker_ms, self._cap, *self._auth)
        return self._call("write", self._keys(key), args)

    def fill_call(self, key: str, encoded: str, since: Reply, head: str | None) -> Call:
        """Store a loaded value unless the key changed after ``since``."""
        to = self._to if head else ""
        args = (encoded, head or "", to, since.version, since.inc, self._cap, *self._auth)
        return self._call("fill", self._keys(key), args)

    def check_call(self, keys: Sequence[str]) -> Call:
        """Version and value digest of each key."""
        names = (self.meta_key, *(self._prefix + key for key in keys))
        return self._call("check", names, (self._cap, *self._auth[:1]))

    def check_reply(self, out: Any) -> tuple[Meta, list[KeyState]]:
        """The check's reply: the store's meta, and each key's (version, digest)."""
        pairs = [(int(out[i]), _text(out[i + 1])) for i in range(2, len(out), 2)]
        return Meta(self._learn(out[0]), int(out[1])), pairs

    def mark_call(self, channel: str, head: str | None) -> Call:
        """Publish a marker on ``channel`` (none when ``head`` is None).

        On a stream namespace every marker goes to the stream, whatever ``channel``.
        """
        to = (channel if self._cap == "" else self._to) if head else ""
        args = (to, head or "", self._cap, *self._auth)
        return self._call("mark", (self.meta_key, *self._streams), args)

    def mark_reply(self, out: Any, call: Call) -> Meta:
        """The marker's reply: the store's meta."""
        stamp = self.stamp(out, call)
        return Meta(stamp.inc, stamp.seq)

    def position_call(self) -> Call:
        """The meta and the stream's last entry id."""
        keys = (self.meta_key, self.stream_key)
        return self._call("position", keys, (self._cap, *self._auth[:1]))

    def position_reply(self, out: Any) -> Position:
        """The position's reply ("0-0": no entry)."""
        return Position(Meta(self._learn(out[0]), int(out[1])), _text(out[2]))

    def _keys(self, key: str) -> tuple[str, ...]:
        """KEYS of the write and fill scripts."""
        return (self._prefix + key, self.meta_key, *self._streams)

    def stamp(self, out: Any, call: Call) -> Stamp:
        """A stamp from a script's reply: a bare number means the incarnation we sent."""
        if isinstance(out, int):
            return Stamp(out, call.known)
        return Stamp(int(out[0]), self._learn(out[1]))

    def _learn(self, raw: bytes | str) -> str:
        """The incarnation a reply named, remembered as the one we know."""
        self._known = _text(raw)
        return self._known


class RedisStore(ScriptCalls):
    """The store on a Redis server (real or fakeredis): one round trip per call.

    With ``stream_maxlen``, messages go to the namespace's stream, capped at about that
    many entries, instead of its pub/sub channel; every client of the namespace must give
    the same cap (or none), as it gives the same secret (else ``TransportMismatch``).
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        namespace: str,
        *,
        signer: Signer | None = None,
        marker_ttl: float = 3600.0,
        stream_maxlen: int | None = None,
    ) -> None:
        super().__init__(
            namespace, signer=signer, marker_ttl=marker_ttl, stream_maxlen=stream_maxlen
        )
        self.client = client
        self.sharded = isinstance(client, RedisCluster)
        if isinstance(client, redis.Redis):
            _teach_sha1hex(client)
        texts = _SHARDED if self.sharded else _SCRIPTS
        self._scripts = {name: client.register_script(text) for name, text in texts.items()}
        self._write_sha = self._scripts["write"].sha

    def meta(self) -> Meta:
        """The current incarnation and sequence number (created when absent)."""
        return self.mark("", None)

    def fence(self) -> None:
        """A PING: Redis reads it in a later round than the write, so the messages the
        write published were written to every subscriber's socket before it answers."""
        self.client.ping()

    def read(self, key: str) -> Reply:
        """Read ``key``; absent keys read as ``(None, current seq)``."""
        call = self.read_call(key)
        return self.read_reply(self._run(call), call)

    def write(self, op: str, key: str, encoded: str, head: str | None) -> Stamp:
        """Apply a write atomically with its message; return its stamp."""
        call = self.write_call(op, key, encoded, head)
        try:
            out = self.client.evalsha(self._write_sha, len(call.keys), *call.keys, *call.args)
        except redis.exceptions.NoScriptError:  # a restarted server forgot its scripts
            out = self._scripts["write"](keys=call.keys, args=call.args)
        except redis.exceptions.ResponseError as exc:
            raise script_error(exc, self.namespace) from None
        return self.stamp(out, call)

    def write_command(self, op: str, key: str, encoded: str, head: str | None) -> tuple[Any, ...]:
        """The EVALSHA arguments of a write, to queue it in a pipeline or a MULTI.

        Called directly rather than through redis-py's Script object, whose bookkeeping
        costs about a sixth of a plain SET.
        """
        call = self.write_call(op, key, encoded, head)
        return (self._write_sha, len(call.keys), *call.keys, *call.args)

    def fill(self, key: str, encoded: str, since: Reply, head: str | None) -> Stamp:
        """Store a loaded value unless the key changed after ``since``; seq 0 when refused."""
        call = self.fill_call(key, encoded, since, head)
        return self.stamp(self._run(call), call)

    def check(self, keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
        """Version and value digest of each key, with the store's meta."""
        return self.check_reply(self._run(self.check_call(keys)))

    def mark(self, channel: str, head: str | None) -> Meta:
        """Publish a marker on ``channel`` (none when ``head`` is None); return the meta.

        On a stream namespace every marker goes to the stream, whatever ``channel``.
        """
        call = self.mark_call(channel, head)
        return self.mark_reply(self._run(call), call)

    def position(self) -> Position:
        """The meta and the stream's last entry id ("0-0": none), in one atomic read."""
        return self.position_reply(self._run(self.position_call()))

    def _run(self, call: Call) -> Any:
        """Run one script (loading it if the server lost it), naming auth mismatches."""
        try:
            return self._scripts[call.script](keys=call.keys, args=call.args)
        except redis.exceptions.ResponseError as exc:
            raise script_error(exc, self.namespace) from None


class AsyncRedisStore(ScriptCalls):
    """``RedisStore`` on a ``redis.asyncio`` client (or fakeredis's): the same scripts and
    arguments, each call awaited. The AsyncCacheNode's store; no stream transport."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        namespace: str,
        *,
        signer: Signer | None = None,
        marker_ttl: float = 3600.0,
    ) -> None:
        super().__init__(namespace, signer=signer, marker_ttl=marker_ttl)
        self.client = client
        _teach_sha1hex(client)
        self._scripts = {name: client.register_script(text) for name, text in _SCRIPTS.items()}

    async def meta(self) -> Meta:
        """The current incarnation and sequence number (created when absent)."""
        return await self.mark("", None)

    async def fence(self) -> None:
        """``RedisStore.fence``, awaited."""
        await self.client.ping()

    async def read(self, key: str) -> Reply:
        """Read ``key``; absent keys read as ``(None, current seq)``."""
        call = self.read_call(key)
        return self.read_reply(await self._run(call), call)

    async def write(self, op: str, key: str, encoded: str, head: str | None) -> Stamp:
        """Apply a write atomically with its message; return its stamp."""
        call = self.write_call(op, key, encoded, head)
        return self.stamp(await self._run(call), call)

    async def fill(self, key: str, encoded: str, since: Reply, head: str | None) -> Stamp:
        """Store a loaded value unless the key changed after ``since``; seq 0 when refused."""
        call = self.fill_call(key, encoded, since, head)
        return self.stamp(await self._run(call), call)

    async def check(self, keys: Sequence[str]) -> tuple[Meta, list[KeyState]]:
        """Version and value digest of each key, with the store's meta."""
        return self.check_reply(await self._run(self.check_call(keys)))

    async def mark(self, channel: str, head: str | None) -> Meta:
        """Publish a marker on ``channel`` (none when ``head`` is None); return the meta."""
        call = self.mark_call(channel, head)
        return self.mark_reply(await self._run(call), call)

    async def _run(self, call: Call) -> Any:
        """Run one script (AsyncScript loads it if the server lost it), naming mismatches."""
        try:
            return await self._scripts[call.script](keys=call.keys, args=call.args)
        except redis.exceptions.ResponseError as exc:
            raise script_error(exc, self.namespace) from None


def script_error(exc: redis.exceptions.ResponseError, namespace: str) -> Exception:
    """A script's refusal as the mismatch it names (AuthenticationMismatch,
    TransportMismatch, StripeMismatch); anything else unchanged."""
    text = str(exc)
    why = _why(text, "cachelab-transport: ")
    if why is not None:
        return TransportMismatch(
            f"namespace {namespace!r}: {why}; every node of a namespace needs the same "
            "transport (strategy 'stream' and its stream_maxlen, or pub/sub)"
        )
    why = _why(text, "cachelab-stripes: ")
    if why is not None:
        return StripeMismatch(
            f"namespace {namespace!r}: {why}; every node of a namespace needs the same stripes"
        )
    why = _why(text, "cachelab-auth: ")
    if why is None:
        return exc
    hint = {
        "the namespace is authenticated": "give this node the secret",
        "the namespace is not authenticated": "give no secret, or use a new namespace",
    }.get(why, "every node of a namespace needs the same secret")
    return AuthenticationMismatch(f"namespace {namespace!r}: {why}; {hint}")


def _why(text: str, prefix: str) -> str | None:
    """What a script's error says after ``prefix`` (to the end of its line), if it says it."""
    if prefix not in text:
        return None
    return text.split(prefix, 1)[1].split("\n", 1)[0].strip()


def _text(raw: bytes | str) -> str:
    """A reply string as str."""
    return raw.decode("ascii") if isinstance(raw, bytes) else raw


def _teach_sha1hex(client: redis.Redis | redis.asyncio.Redis) -> None:
    """Give fakeredis's Lua the ``redis.sha1hex`` real servers have (fakeredis#183)."""
    server = fake_server(client)
    if server is None:
        return  # a real server
    if getattr(server, "_lua_runtime", None) is None:
        # fakeredis creates its Lua runtime on first use; a sync client of the same server
        # makes it without a round trip to await (the async client shares the server)
        import fakeredis  # the client is fakeredis's, so this costs nothing more

        sync = client if isinstance(client, redis.Redis) else fakeredis.FakeRedis(server=server)
        sync.eval("return 1", 0)
    table = server._lua_runtime.globals().redis
    if table.sha1hex is None:
        table.sha1hex = _sha1hex


def fake_server(client: redis.Redis | redis.asyncio.Redis) -> Any:
    """The fakeredis server behind ``client``, or None for a real server's client."""
    server = client.connection_pool.connection_kwargs.get("server")
    # told by the type's module, not isinstance: a real server's client never imports
    # fakeredis (and with it lupa and numpy)
    if server is None or type(server).__module__.split(".")[0] != "fakeredis":
        return None
    return server


def _sha1hex(data: bytes | str) -> bytes:
    """SHA-1 in lowercase hex, as Redis's Lua ``redis.sha1hex`` computes it."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha1(raw).hexdigest().encode("ascii")
