# %% [markdown]
# # 02 · Watching invalidations propagate
#
# A write in cachelab is one round trip: a Lua script bumps the key's version, stores the
# value and publishes a message, atomically. Every node hears the message a little later
# and drops (or, with the `update` strategy, replaces) its copy. In between, a peer can
# still serve the old value: that window is what every other notebook measures.
#
# This notebook lets you *play* with it:
#
# 1. a **control panel over real nodes**: CacheNodes on the embedded fakeredis (or your
#    Redis, with `REDIS_URL`). Write a key, cut a node off, drop the next message, and
#    read every node's cache and counters in the table;
# 2. the **same panel on the simulator**, where time is virtual and every message is
#    traced, so each action is **animated** in the trace viewer under the panel;
# 3. a scripted scene in the viewer: a message lost on its way, the stale read it causes,
#    and the sequence gap that ends it.
#
# Two words before we start. A read is **stale** when it returns a version older than a
# write that had already *completed* when the read started (a write still in progress
# never makes a read stale). The **checker** (`cachelab.check`) finds every stale read
# in a run's history; notebook 07 defines the rest of its report.
#
# The panels need a live kernel. The trace viewer also plays in an exported HTML copy of
# this notebook, with no kernel and no internet.

# %% tags=["parameters"]
REDIS_URL = None  # e.g. "redis://localhost:6379/0"; None reads $REDIS_URL, else embedded fakeredis
NODES = 3
STRATEGY = "invalidate"
DELAY_MS = 2.0  # one-way message delay on the simulator
SEED = 7

# %%
import os

from cachelab.lab.viz import TraceViewer, live_panel, sim_panel
from cachelab.sim import Network, Partition, Request, Simulation

REDIS_URL = REDIS_URL or os.environ.get("REDIS_URL")
print("real nodes on:", "your Redis" if REDIS_URL else "the embedded fakeredis")

# %% [markdown]
# ## 1 · The control panel, on real nodes
#
# Press **write**: node `a` writes `user:1`, the panel waits until every node has handled
# every message (a sync marker through the same channel), then, with *then read it on
# every node* ticked, every node reads the key. Watch the counters: `inval.` counts the
# invalidations a node received, `misses` the reads that went to Redis.
#
# Then break it:
#
# - **drop next message** (target `b`), then **write**: the message never reaches `b`. But
#   the sync marker the panel sends right after carries Redis's current sequence number,
#   so `b` notices the **gap** at once: what it held turns suspect, and repair checks it
#   against Redis (`kept`, `dropped`). Untick `gap detection` and do it again: now `b`
#   keeps serving the old version, shown in red.
# - **partition node**: `b` is told its connection dropped (as redis-py would be): it
#   trusts nothing it holds and caches nothing until it resubscribes. **heal node**
#   resubscribes it, and it repairs.
# - **loss** and **delay** apply to every message from now on; the safeguards, TTL,
#   strategy and node count rebuild the cluster.

# %%
panel = live_panel(REDIS_URL, nodes=NODES, strategy=STRATEGY)
panel

# %% [markdown]
# ## 2 · The same panel, on the simulator
#
# Here nothing runs in the background: the session is a script of requests replayed in
# virtual time after each action, so every message is traced, and the **trace viewer**
# under the table animates what the action did. Moving **delay** or **loss** replays the
# *same* session under the new network and plays it from the start: drag delay to 50 ms
# and watch the dots crawl, and the read-backs overtake them.
#
# How to read the viewer: Redis on top, one box per node with the keys it caches and
# their versions. A **blue dot** is a message travelling from Redis to a node; a **green
# dot** a write on its way to Redis; an **orange dot** a read's reply. A red **✕** is a
# message lost on the way (`loss`, `partition`: cut silently, or `dropped`: your *drop
# next message*). Markers under a node say what it did: *fill rejected*, *gap*,
# *suspect*, *repair: kept* or *dropped*, *STALE READ* (the box turns red). (The simulator
# sends no sync markers, so here a lost message is found by the next one.) The log lists every event; `message k v2
# (set:applied)` means the node applied a peer's change, `(set:own)` that it was its own
# write coming back (it already holds that version), `(set:outdated)` that it knew a
# newer one. Click any event, dot or marker to see what happened and which safeguard
# acted. ▶ plays, ▶| steps one event, the slider scrubs, the menu sets the speed.
#
# The buttons are ordinary methods too. A short session, done in code so that this
# notebook shows something before you touch it:

# %%
sim = sim_panel(seed=SEED, nodes=NODES, strategy=STRATEGY, delay_ms=DELAY_MS)
sim.write()  # a writes v1; everyone reads it back
sim.drop_next()  # the next message to b will be lost
sim.write()  # v2: b keeps v1 and serves it: a stale read
sim.key.value = "user:2"
sim.write()  # another key: b sees the sequence gap and repairs
sim.key.value = "user:1"
sim.read_all()  # b reads v2 from Redis
sim

# %% [markdown]
# The same session on its own, for a closer look (and for the exported copy of this
# notebook): step to the red ✕, the message `b` lost, then to `b`'s stale read, then to
# the gap that ends it.

# %%
TraceViewer(sim.backend.trace, nodes=sim.backend.names(), title="the session above")

# %% [markdown]
# ## 3 · A scripted scene
#
# The same story with a different cause: `c`'s subscription is cut *silently* for a few
# milliseconds (a half-open connection: nothing tells `c`), exactly while the invalidation
# of `k` passes. `c` goes on serving `k v1`. A write of another key, once the link is back,
# carries a sequence number that skips the lost one: `c` repairs (`k` changed: dropped)
# and its next read is fresh. This is the real CacheNode code on the simulator's clock.

# %%
delay = DELAY_MS / 1000
t_cut = 0.004 + 2 * delay  # the second write, whose message c will miss
t_gap = t_cut + 4 * delay  # a write of another key, after the link is back
workload = [
    Request(0.0, 0, "write", "k"),  # v1
    *(Request(0.002 + 2 * delay, i, "read", "k") for i in range(NODES)),
    Request(t_cut, 0, "write", "k"),  # v2
    *(Request(t_cut + 2 * delay + 0.001 * i, i, "read", "k") for i in range(NODES)),
    Request(t_gap, 0, "write", "other"),  # v3
    *(Request(t_gap + 2 * delay + 0.001, i, "read", "k") for i in range(NODES)),
]
victim = NODES - 1
network = Network(delay=delay, partitions=[Partition(victim, t_cut, t_cut + 2 * delay)])
scene = Simulation(nodes=NODES, strategy=STRATEGY, seed=SEED, network=network, progress=False)
result = scene.run(workload=workload)
result.report

# %%
TraceViewer(result.trace, nodes=result.nodes, title="c misses an invalidation",
            verdict=f"{result.report.stale_reads} stale read(s)", ok=False)

# %% [markdown]
# What to notice:
#
# - the writer's own copy is updated at once (it filled its cache through the fill guard);
# - peers that held `k` drop it when the invalidation lands, and reload on their next read;
# - the cut-off node's stale read is the checker's `stale_reads` count above: a read that
#   started after a newer write had completed, yet returned the older version;
# - the **gap** ends it. Without gap detection (`gap_detection=False`) it would last until
#   the TTL, or forever without one.
#
# ## Exercises
#
# 1. In the simulator panel, switch **gap detection** off (the log says which safeguard
#    changed), then drop the next message to `b` and write twice. How long does `b` stay
#    stale now?
# 2. Rebuild the simulator panel (change the node count and back), write twice, then drag
#    the delay to 50 ms: the same session replays under a slower network. Which reads are
#    stale now, and why does the checker call them stale although every message arrives?
# 3. In the scripted scene, what would a TTL of 10 ms change?
#
# <details><summary>Worked answers</summary>
#
# 1. Forever, or until a later write of `user:1` itself reaches `b`: without gap
#    detection nothing tells `b` that it missed a message. The write of another key no
#    longer helps: it carries the gap, but nobody looks at it.
# 2. The second write's read-backs on `b` and `c`: in the session they ran a few ms after
#    the write, and the invalidations now take 50 ms, so those peers serve their cached
#    `v1`. The write had completed before the reads started, so they are stale, for as
#    long as the message takes (the *propagation window*): staleness is bounded by the
#    delay.
# 3. The stale entry would expire 10 ms after it was filled, so `c`'s stale read would
#    end sooner, at the price of a miss on every read more than 10 ms after a fill. A TTL
#    bounds staleness whatever the cause; the gap detection ends it at the next message.
#
# </details>
#
# Next: [03 · hit rates](03-hit-rates.ipynb), where the same nodes serve 20,000 requests
# per simulated run.

# %% [markdown]
# The live panel's nodes keep running while this kernel does; `panel.close()` stops them.
