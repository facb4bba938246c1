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
#    traced, so the session can be **animated**;
# 3. a scripted scene, animated frame by frame: a message lost on its way, the stale read
#    it causes, and the sequence gap that ends it.
#
# The widgets need a live kernel. The animations are also embedded as JavaScript, so they
# play in an exported HTML copy of this notebook.

# %% tags=["parameters"]
REDIS_URL = None  # e.g. "redis://localhost:6379/0"; None reads $REDIS_URL, else embedded fakeredis
NODES = 3
STRATEGY = "invalidate"
DELAY_MS = 2.0  # one-way message delay on the simulator
SEED = 7

# %%
import os

from IPython.display import HTML, display

from cachelab.sim import Network, Partition, Request, Simulation
from cachelab.viz import TracePlayer, animate, live_panel, sim_panel

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
# - **drop next message** (target `b`), then **write**: `b` keeps serving the old version,
#   shown in red. Write *another* key: the next message carries a sequence number that
#   skips one, `b` counts a **gap** and flushes. Untick `gap detection` to see `b` stay
#   stale.
# - **partition node**: `b` is told its connection dropped (as redis-py would be): it
#   flushes and stops caching until it resubscribes. **heal node** resubscribes it.
# - **loss** and **delay** apply to every message from now on; the safeguards, TTL,
#   strategy and node count rebuild the cluster.

# %%
panel = live_panel(REDIS_URL, nodes=NODES, strategy=STRATEGY)
panel

# %% [markdown]
# ## 2 · The same panel, on the simulator
#
# Here nothing runs in the background: the session is a script of requests replayed in
# virtual time after each action, so every message is traced. Moving **delay** or **loss**
# replays the *same* session under the new network: "how would this have gone with a
# 50 ms network?".
#
# The buttons are ordinary methods too. A short session, done in code so that this
# notebook shows something before you touch it:

# %%
sim = sim_panel(seed=SEED, nodes=NODES, strategy=STRATEGY, delay_ms=DELAY_MS)
sim.write()  # a writes v1; everyone reads it back
sim.drop_next()  # the next message to b will be lost
sim.write()  # v2: b keeps v1 and serves it: a stale read
sim.key.value = "user:2"
sim.write()  # another key: b sees the sequence gap and flushes
sim.key.value = "user:1"
sim.read_all()  # b reads v2 from Redis
sim

# %% [markdown]
# Every message of that session, frame by frame. Blue dots travel from Redis to the nodes;
# the red cross is the message `b` lost; `b`'s box turns red when it serves the stale read.
# Press play, or drag the slider.

# %%
player = TracePlayer(sim.backend.trace, max_frames=60, interval=300)
player

# %% [markdown]
# ## 3 · A scripted scene, as an embedded animation
#
# The same story with a different cause: `c`'s subscription is cut *silently* for a few
# milliseconds (a half-open connection: nothing tells `c`), exactly while the invalidation
# of `k` passes. `c` goes on serving `k v1`. A write of another key, once the link is back,
# carries a sequence number that skips the lost one: `c` flushes and its next read is
# fresh. This is the real CacheNode code on the simulator's clock.

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
print(result.report)

# %%
animation = animate(result.trace, nodes=result.nodes, max_frames=60, interval=300)
HTML(animation.to_jshtml())

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
# Next: [03 · hit rates](03-hit-rates.ipynb), where the same nodes serve a hundred
# thousand requests.

# %% [markdown]
# The live panel's nodes keep running while this kernel does; `panel.close()` stops them.
