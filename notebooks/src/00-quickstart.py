# %% [markdown]
# # 00 · Quickstart: three near caches that stay correct
#
# A **near cache** keeps a local copy of hot Redis keys inside each process, so a read
# costs a dictionary lookup instead of a network round trip. The hard part is keeping
# those copies *coherent*: when one process writes a key, every other process must stop
# serving the old value.
#
# cachelab does it with **versioned messages**. Every write runs one Lua script in Redis
# that bumps a global sequence number (which becomes the key's version), stores the value
# and publishes a message, atomically. Every node listens, drops or replaces its copy,
# and ignores anything older than what it already knows.
#
# This notebook runs three nodes, writes, invalidates, and shows each node's stats.
# It uses the embedded fakeredis server (no Redis needed); set `REDIS_URL` to use a real one.

# %% tags=["parameters"]
REDIS_URL = None  # None reads $REDIS_URL; unset means the embedded fakeredis server
NODES = 3

# %%
import os

import cachelab

REDIS_URL = REDIS_URL or os.environ.get("REDIS_URL")
cluster = cachelab.Cluster(NODES, url=REDIS_URL, strategy="invalidate")
a, b, c = cluster.nodes[:3]
print("backend:", "real Redis at " + REDIS_URL if REDIS_URL else "embedded fakeredis")
print("nodes:", [node.name for node in cluster.nodes], "namespace:", cluster.namespace)

# %% [markdown]
# ## A write, then reads everywhere
#
# `a.set` stores the value in Redis and publishes the change. The first `get` on each
# other node is a **miss**: it loads the value from Redis and fills the local cache. The
# second is a **hit**, served from memory.

# %%
a.set("user:1", {"name": "alice", "plan": "free"})
for node in cluster.nodes:
    first, second = node.get("user:1"), node.get("user:1")
    version = node.snapshot()["user:1"][1]
    print(f"{node.name}: {second}   (cached locally at version {version})")

# %% [markdown]
# ## An update reaches every node
#
# `b` changes the value. Its message tells `a` and `c` to drop their copies, so their
# next read loads the new value. `cluster.settle()` waits until every node has handled
# every message published so far (in production you never wait: a message takes well
# under a millisecond on a LAN).

# %%
b.set("user:1", {"name": "alice", "plan": "pro"})
assert cluster.settle(timeout=5.0)
for node in cluster.nodes:
    value, version = node.get("user:1"), node.snapshot()["user:1"][1]
    print(f"{node.name}: {value}  (version {version})")

# %% [markdown]
# ## Invalidation after an external write
#
# When the source of truth is a database, use `get_or_load`: the first node to miss calls
# your loader and shares the result through Redis. After you change the database, call
# `invalidate` and every node reloads on its next read.

# %%
database = {"price:7": 100}
print([node.get_or_load("price:7", lambda: database["price:7"]) for node in cluster.nodes])
database["price:7"] = 120
c.invalidate("price:7")
assert cluster.settle(timeout=5.0)
print([node.get_or_load("price:7", lambda: database["price:7"]) for node in cluster.nodes])

# %% [markdown]
# ## What each node did
#
# `hits` and `misses` count local lookups; `invalidations_received` counts peers' changes
# that were newer than what the node knew; `stale_fills_rejected` counts loads that a newer
# change overtook (see notebook 04); `messages_ignored` counts messages dropped as
# malformed, foreign, outdated or duplicated.

# %%
columns = ["hits", "misses", "hit_rate", "invalidations_received", "stale_fills_rejected",
           "flushes", "messages_ignored"]
rows = {node.name: node.stats.to_dict() for node in cluster.nodes}
print(f"{'':<24}" + "".join(f"{name:>8}" for name in rows))
for column in columns:
    cells = (f"{rows[name][column]:>8.2f}" if column == "hit_rate" else f"{rows[name][column]:>8}"
             for name in rows)
    print(f"{column:<24}" + "".join(cells))

# %% [markdown]
# ## A decorator, and `await` in the notebook
#
# `@node.cached` caches a function's results through a node, keyed explicitly (a format
# over the arguments, or a `key=` callable; arbitrary objects are never hashed). The
# result is stored in Redis for every node: another node's decorated function is served
# without calling it, and `invalidate(...)` drops one call's entry everywhere.

# %%
calls = []


def square(x):
    calls.append(x)
    return x * x


on_a = a.cached(square, key="square:{0}")
on_b = b.cached(square, key="square:{0}")
print(on_a(12), on_a(12), on_b(12), "calls:", calls)  # one call: a hit, then Redis for b
on_b.invalidate(12)
cluster.settle()
print(on_a(12), "calls:", calls, on_a.cache_info())

# %% [markdown]
# JupyterLab runs an event loop, so a cell can `await` directly. `AsyncCacheNode` is the
# same protocol for asyncio services (FastAPI, say): here it joins the namespace of the
# three nodes above, on the same server, reads what they wrote, and writes back.

# %%
import fakeredis
import redis.asyncio


def async_client():
    """An asyncio client of the cluster's server (the embedded fakeredis, or REDIS_URL)."""
    if REDIS_URL:
        return redis.asyncio.Redis.from_url(REDIS_URL)
    return fakeredis.FakeAsyncRedis(server=cluster.redis.connection_pool.connection_kwargs["server"])


r_async = async_client()
async with cachelab.AsyncCacheNode(r_async, name="d", namespace=cluster.namespace) as d:
    print("d reads:", await d.get("user:1"))
    await d.set("user:1", {"name": "alice", "plan": "team"})
    cluster.settle()
    print("a reads:", a.get("user:1"), "| d peeks:", d.peek("user:1"))
await r_async.aclose()

# %% [markdown]
# Every node agrees with Redis. The next notebooks show what goes wrong without these
# safeguards: **01** runs the naive recipe and loses a message, **02** animates messages
# crossing the network, **04** reproduces every classic race and its fix, and **08**
# asks you to write the safeguards yourself.
#
# ## Exercises
#
# 1. After `b.set(...)`, why is `b`'s own next read a hit at the new version, without
#    waiting for any message?
# 2. What would `a.get("user:1")` return right after `b.set(...)` if you did *not* call
#    `cluster.settle()`, on a real network?
#
# <details><summary>Worked answers</summary>
#
# 1. The write path fills the writer's own cache with the version the Lua script
#    returned, before `set` returns (read-your-writes on the writer).
# 2. Possibly the old value, for as long as the message takes to arrive (well under a
#    millisecond on a LAN): invalidation is asynchronous. Notebook 02 shows that window.
#
# </details>
#
# Next: [01 · the naive recipe](01-the-naive-recipe.ipynb).

# %%
cluster.close()
