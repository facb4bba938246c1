# %% [markdown]
# # 01 · The naive recipe, and the message it silently loses
#
# A popular recipe for a near cache over Redis fits in twenty lines:
#
# 1. every process keeps a plain `dict` of the keys it has read;
# 2. a write does `SET key value`, then `PUBLISH invalidations key`;
# 3. every process subscribes to `invalidations` and deletes the key from its dict.
#
# It works in every demo. This notebook runs it as it stands, shows it working, then
# breaks it the way production breaks it: **the subscriber's connection drops and comes
# back**. redis-py reconnects and resubscribes for you, and the invalidation published in
# between is gone. Nobody gets an error. One process serves the old value forever.
#
# Then we do the same thing to cachelab nodes and watch them notice.
#
# Runs offline on the embedded fakeredis; set `REDIS_URL` to use a real Redis
# (the notebook only kills the connections it opened itself, by client name).

# %% tags=["parameters"]
REDIS_URL = None  # e.g. "redis://localhost:6379/0"; None reads $REDIS_URL, else embedded fakeredis
KEY = "user:42"

# %%
import os

import fakeredis
import redis

import cachelab
from cachelab.backends import embedded_server

REDIS_URL = REDIS_URL or os.environ.get("REDIS_URL")
print("backend:", "real Redis" if REDIS_URL else "embedded fakeredis")


def client(name: str, **options) -> redis.Redis:
    """A Redis client whose connections carry ``name`` (so we can kill exactly those)."""
    if REDIS_URL:
        return redis.Redis.from_url(REDIS_URL, client_name=name, **options)
    return fakeredis.FakeRedis(server=embedded_server(), client_name=name, **options)


admin = client("lab-admin")

# %% [markdown]
# ## The recipe, as published
#
# The only liberty taken: the listener loop is a method, `pump()`, that handles whatever is
# waiting and returns. In production a thread calls it forever; here we call it by hand so
# that each step is visible and the failure lands exactly where we want it. The loop is
# already *hardened* the way everyone hardens it: on a `ConnectionError` it carries on,
# because redis-py reconnects and resubscribes on the next call.

# %%
CHANNEL = "naive:invalidations"


class NaiveNode:
    """The recipe: a dict, SET + PUBLISH on write, delete on message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.r = client(f"naive-{name}")
        self.cache: dict[str, bytes | None] = {}
        self.pubsub = self.r.pubsub()
        self.pubsub.subscribe(CHANNEL)

    def get(self, key: str) -> bytes | None:
        if key not in self.cache:
            self.cache[key] = self.r.get(key)
        return self.cache[key]

    def set(self, key: str, value: str) -> None:
        self.r.set(key, value)
        self.cache[key] = value.encode()
        self.r.publish(CHANNEL, key)

    def pump(self) -> None:
        """What the listener thread does, once: apply every message waiting."""
        while True:
            try:
                message = self.pubsub.get_message(timeout=0.05)
            except redis.ConnectionError:
                continue  # "redis-py reconnects and resubscribes for us"
            if message is None:
                return
            if message["type"] == "message":
                self.cache.pop(message["data"].decode(), None)


nodes = {name: NaiveNode(name) for name in "abc"}
a, b, c = nodes.values()


def show(label: str) -> None:
    """Every node's view of KEY."""
    views = "   ".join(f"{n.name}: {n.get(KEY)!r}" for n in nodes.values())
    print(f"{label:<28} {views}")


# %% [markdown]
# ## It works
#
# Every node reads the key, `a` changes it, the invalidation reaches `b` and `c`, and their
# next read fetches the new value.

# %%
a.set(KEY, "alice")
for n in nodes.values():
    n.pump()
show("everyone reads")
a.set(KEY, "bob")
for n in nodes.values():
    n.pump()
show("after a writes 'bob'")

# %% [markdown]
# ## The subscriber reconnects
#
# Now `b`'s connection drops: a Redis restart or failover, a proxy timing out an idle
# connection, a network blip. We kill exactly `b`'s connections with `CLIENT KILL`.
#
# On a real server the kill closes the socket, and redis-py notices on its next read. The
# embedded fakeredis has no socket: a killed connection there only fails when the client
# *sends*, so we also close `b`'s end, which is what the kernel does for a real socket.
#
# While `b` is down, `a` writes again. Then `b`'s listener runs as usual.

# %%
def kill(name: str) -> int:
    """CLIENT KILL every connection of the clients called ``name``."""
    ids = [entry["id"] for entry in admin.client_list() if entry.get("name") == name]
    return sum(admin.client_kill_filter(_id=i) for i in ids)


killed = kill("naive-b")
if not REDIS_URL:
    b.pubsub.connection.disconnect()
print(f"killed {killed} connection(s) of node b")

a.set(KEY, "carol")  # published while b has no subscription: Redis keeps nothing for it
for n in nodes.values():
    n.pump()  # b reconnects and resubscribes here, silently
show("after a writes 'carol'")
print("b still subscribed?", admin.pubsub_numsub(CHANNEL))

# %% [markdown]
# `b` is subscribed again and raised nothing, yet it serves `'bob'`, and will until the
# process restarts: there is no TTL in the recipe, and nothing will ever tell `b` that it
# missed a message. Pub/Sub is *at most once*. Every later write of *this* key would fix
# `b`, so the damage hides in the keys that change rarely, which are exactly the ones a
# cache holds longest.

# %%
stale = b.get(KEY) != a.get(KEY)
print("b is stale:", stale)
assert stale, "the naive recipe should have lost the invalidation"

# %% [markdown]
# ## Redis restarts empty
#
# A Redis restart without persistence, or a `FLUSHALL`, empties Redis and publishes
# nothing. We delete the key behind the nodes' backs, as the restart would for this key
# (the notebook never flushes your server).

# %%
admin.delete(KEY)  # what a restart or a FLUSHALL does to the key: gone, and nobody told
for n in nodes.values():
    n.pump()
print("Redis holds:", admin.get(KEY))
show("after Redis lost the key")
served = {n.name: n.get(KEY) for n in nodes.values()}
assert admin.get(KEY) is None and all(v is not None for v in served.values())

# %% [markdown]
# Every node keeps serving a value Redis no longer has, and will until the process
# restarts: no message was sent, and nothing in the recipe ever asks Redis again.

# %% [markdown]
# ## The same blow, to cachelab nodes
#
# A cachelab node carries a sequence number in every message and treats every
# resubscription as a possible loss: it stops trusting its local copy and *repairs* it,
# checking each entry against Redis by version and digest, keeping what did not change.
#
# Its bus also publishes a **heartbeat** on a private channel and expects the echo on the
# same subscription. That is how a deaf subscription is noticed even when no message is
# flowing: on a real network, a half-open TCP connection (a NAT or firewall that silently
# forgot it) is as quiet as fakeredis's killed socket. The default interval is one
# second; here it is 0.1 s so the notebook does not wait.

# %%
for n in nodes.values():
    n.pubsub.close()  # the naive nodes are done

lab = client("lab-cachelab")
cluster = cachelab.Cluster(3, client=lab, strategy="invalidate", heartbeat=0.1)
ca, cb, cc = cluster.nodes


def show_cluster(label: str) -> None:
    """Every cachelab node's view of KEY."""
    views = "   ".join(f"{n.name}: {n.get(KEY)!r}" for n in cluster.nodes)
    print(f"{label:<28} {views}")


ca.set(KEY, "alice")
cluster.settle()
show_cluster("everyone reads")
ca.set(KEY, "bob")
cluster.settle()
show_cluster("after a writes 'bob'")

# %%
def kill_subscribers(name: str) -> int:
    """CLIENT KILL the subscriber connections of the clients called ``name``."""
    if REDIS_URL:
        ids = [e["id"] for e in admin.client_list(_type="pubsub") if e.get("name") == name]
        return sum(admin.client_kill_filter(_id=i) for i in ids)
    # fakeredis does not tell which connections subscribe; its embedded server is ours alone
    return admin.client_kill_filter(_type="pubsub")


killed = kill_subscribers("lab-cachelab")  # every subscriber of the cluster, b included
ca.set(KEY, "carol")
print(f"killed {killed} connection(s); settled: {cluster.settle(timeout=10)}")
show_cluster("after a writes 'carol'")

# %%
rows = {n.name: n.stats.to_dict() for n in cluster.nodes}
print(f"{'node':<5} {'disconnects':>11} {'reconnects':>10} {'kept':>5} {'dropped':>8} {'gaps':>5}")
for name, s in rows.items():
    print(f"{name:<5} {s['disconnects']:>11} {s['reconnects']:>10} {s['repair_kept']:>5} "
          f"{s['repair_dropped']:>8} {s['gaps']:>5}")
assert cb.get(KEY) == "carol"
assert all(s["reconnects"] >= 1 for s in rows.values())

# %% [markdown]
# Every node noticed its connection drop (`disconnects`) and stopped trusting its local
# copy until it had resubscribed. Then it repaired it: each entry checked against Redis,
# those still current kept (`kept`), the others dropped (`dropped`), so the next read of a
# changed key goes to Redis. The invalidation for `'carol'` may have been lost for some
# of them; it no longer matters.
#
# A reconnect is the loud case. A message can also vanish *without* a reconnect (a
# subscriber too slow for Redis's output buffer limit is dropped and reconnects; a
# message lost inside a proxy). For that, each message carries the global sequence
# number, and a node that sees `seq 7` after `seq 5` repairs too: that is the `gaps`
# column, exercised in notebook 02 with the *drop next message* button. Even the *last*
# message of a burst is covered: the heartbeat and `settle()` carry Redis's current
# number, so a node that never hears another message still learns what it missed.
#
# | what went wrong | naive recipe | cachelab |
# |---|---|---|
# | subscriber reconnects, messages lost in between | stale until restart, no error | detects the resubscription, repairs |
# | a message lost without a reconnect | stale until restart | detects the sequence gap, repairs |
# | Redis restarts empty, or FLUSHALL | keeps serving values Redis no longer has, until restart | a new incarnation: re-bases and repairs |
# | dead connection, no traffic | deaf forever | the heartbeat's missing echo notices |
#
# ## Exercises
#
# 1. Would a TTL of one minute have saved the naive recipe? What would it cost?
# 2. The naive listener deletes the key on *every* message, its own write's included.
#    What does that cost the writer?
#
# <details><summary>Worked answers</summary>
#
# 1. It bounds the damage to one minute of stale reads, at the price of a miss per key per
#    minute. It does not notice the loss; it only forgets everything regularly.
# 2. The writer caches the value it just wrote, then its own message comes back and
#    deletes it: its next read is a miss, a wasted Redis round trip, on every key a
#    process both writes and reads. A cachelab node recognises its own messages
#    (`set:own` in the trace viewer) and skips them.
#
# </details>
#
# Next: [02 · watching invalidations propagate](02-watching-invalidations-propagate.ipynb).

# %%
cluster.close()
