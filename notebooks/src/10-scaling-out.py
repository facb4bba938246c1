# %% [markdown]
# # 10 · Scaling out: a thousand nodes, one Redis, and what a write costs it
#
# Every notebook so far ran a handful of nodes. A real service runs hundreds or
# thousands of processes, and every one of them is a subscriber. This notebook asks what
# that does to Redis:
#
# 1. **messages per write and server load** as the fleet grows, for three designs:
#    broadcast pub/sub (cachelab's `invalidate`), server-assisted **tracking** (the
#    server tells only the nodes that read the key) and a namespace **striped** over
#    sharded pub/sub on a Redis Cluster;
# 2. **where one Redis saturates**: the write rate at which its single thread is busy
#    all the time;
# 3. **what batching buys**: Hazelcast's near cache sends one invalidation message per
#    100 writes or per 10 s; fewer messages, at a price in staleness.
#
# The simulator of the other notebooks runs every node's real code, which is exact and
# far too slow for 10,000 nodes. Here a *fleet model* (`cachelab.sim.fleet`) runs none:
# it draws the fleet's writes, queues each on its server as one job whose CPU cost comes
# from a measured **calibration**, and works out whom each write reaches. Its docstrings
# say exactly what it models and what it leaves out.

# %% tags=["parameters"]
REDIS_URL = None  # e.g. "redis://localhost:6379/0": calibrate on that server (a few hundred PUBLISHes)
NODE_COUNTS = (10, 100, 1000, 10_000)
WRITE_RATE = 100.0  # writes per second, the whole fleet
READ_RATE = 50.0  # reads per second, per node (Zipf 0.99 over 10,000 keys)
SECONDS = 5.0  # virtual seconds per run
STRIPES, SHARDS = 16, 3
SEED = 10

# %%
import os
import time

import matplotlib.pyplot as plt

from cachelab.lab.viz.scaling import batch_bars, scaling_lines
from cachelab.sim.fleet import Fleet
from cachelab.sim.fleet_calibration import SCALING_JSON, default, measure
from cachelab.sim.fleet_saturation import cost_per_write, saturation_table

REDIS_URL = REDIS_URL or os.environ.get("REDIS_URL")
MODES = {
    "broadcast": {"mode": "broadcast"},
    "tracking": {"mode": "tracking"},
    f"striped {STRIPES}/{SHARDS}": {"mode": "striped", "stripes": STRIPES, "shards": SHARDS},
}

# %% [markdown]
# ## 0 · What a write costs the server: the calibration
#
# Four figures, in microseconds of the server's CPU: a `PUBLISH` (or any one command), each
# delivery of a message to one subscriber, the extra of cachelab's write script over a bare
# `PUBLISH`, and each tracking invalidation (a RESP2 redirect is a pub/sub message, so it
# costs a delivery). With `REDIS_URL` set, the cell measures your server live (`INFO cpu`
# around 300 `PUBLISH`es to none and to 8 subscribers, and as many cachelab writes; the
# median of three rounds).
# Otherwise it reads `cachelab/sim/scaling.json`, written by the scaling benchmark, or, when that
# file is absent, the fallback committed with the code. It prints which.

# %%
if REDIS_URL:
    import redis

    with redis.Redis.from_url(REDIS_URL) as server:
        CAL = measure(server, publishes=300, subscribers=8, rounds=3)
else:
    CAL = default()
    print("cachelab/sim/scaling.json", "found" if SCALING_JSON.exists() else "absent", f"({SCALING_JSON})")
print("calibration:", CAL.describe())
print(f"a broadcast write to 1,000 nodes: {cost_per_write(CAL, 'broadcast', 1000) * 1e6:,.0f} us "
      f"of server CPU, of which {1000 * CAL.delivery_us:,.0f} us are the deliveries")
print(f"the deliveries outweigh the script and the PUBLISH from "
      f"{(CAL.publish_us + CAL.script_us) / CAL.delivery_us:.0f} subscribers on")


def run(nodes, write_rate=WRITE_RATE, **options):
    """One fleet run with this notebook's defaults."""
    options = {"read_rate": READ_RATE, "calibration": CAL, "seed": SEED, **options}
    return Fleet(nodes, write_rate=write_rate, **options).run(SECONDS)


# %% [markdown]
# ## 1 · Messages per write and server load, as the fleet grows
#
# The whole fleet writes `WRITE_RATE` times a second. Broadcast delivers every message to
# every node; striping delivers as many, spread over the shards; tracking delivers to the
# nodes that read the key since its previous write.

# %%
started = time.perf_counter()
grid = {label: [run(n, **options) for n in NODE_COUNTS] for label, options in MODES.items()}
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
scaling_lines({label: [(r.nodes, max(r.messages_per_write, 1e-3)) for r in rs]
               for label, rs in grid.items()},
              xlabel="nodes", ylabel="messages per write", title="What a write costs the network",
              ax=left)
scaling_lines({label: [(r.nodes, max(r.busiest, 1e-5)) for r in rs] for label, rs in grid.items()},
              xlabel="nodes", ylabel="CPU s per s (busiest shard)",
              title=f"Server load at {WRITE_RATE:g} writes/s", limit=1.0, ax=right)
plt.show()
print(f"{'':<14} {'nodes':>6} {'msgs/write':>10} {'busiest':>8} {'queue p99':>10} "
      f"{'stale p50':>10} {'stale p99':>10}  saturated")
for label, results in grid.items():
    for r in results:
        print(f"{label:<14} {r.nodes:>6} {r.messages_per_write:>10.1f} {r.busiest:>8.3f} "
              f"{r.queue_p99 * 1e3:>8.2f}ms {r.staleness_p50 * 1e3:>8.2f}ms "
              f"{r.staleness_p99 * 1e3:>8.2f}ms  {r.saturated}")
print(f"({len(NODE_COUNTS) * len(MODES)} runs in {time.perf_counter() - started:.1f} s of real time)")

# %%
big = {label: rs[-1] for label, rs in grid.items()}
b, t, s = big.values()
print(f"At {b.nodes:,} nodes: broadcast {b.messages_per_write:,.0f} messages per write, "
      f"tracking {t.messages_per_write:,.0f} ({t.messages_per_write / b.messages_per_write:.1%} of "
      f"broadcast), striped {s.messages_per_write:,.0f} with its busiest shard at "
      f"{s.busiest / b.busiest:.0%} of broadcast's one server.")

# %% [markdown]
# Read the table above, not a rule of thumb: broadcast and striped pay one delivery per
# node per write, so their load grows in step with the fleet; the deliveries, not the
# script, are most of a write's cost past the fleet size printed in section 0. Striping
# sends just as many messages but spreads them over the shards, unevenly: the hash tags of
# 16 stripes do not split into three equal thirds of Redis Cluster's slots, and a Zipf hot
# key drags its stripe's shard up (section 3). Tracking grows more slowly: a write reaches
# only the nodes that read that key since its previous write, so its cost follows *sharing*
# (key popularity and read rate), not the fleet's size. Its staleness grows least, too: a
# shorter fan-out leaves each message sooner.

# %% [markdown]
# ## 2 · As the write rate grows, at 1,000 nodes
#
# One Redis is one thread: when its CPU per second reaches 1, the queue of waiting
# messages grows without bound and staleness with it. The model stops a run whose
# backlog passes a second and marks it saturated.

# %%
rates = (10, 30, 100, 300, 1000, 3000)
sweep = {label: [run(1000, rate, **options) for rate in rates] for label, options in MODES.items()}
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
scaling_lines({label: [(r.write_rate, r.busiest) for r in rs] for label, rs in sweep.items()},
              xlabel="writes per second", ylabel="CPU s per s (busiest shard)",
              title="1,000 nodes", limit=1.0, ax=left)
scaling_lines({label: [(r.write_rate, r.staleness_p99 * 1e3) for r in rs]
               for label, rs in sweep.items()},
              xlabel="writes per second", ylabel="staleness p99 (ms)",
              title="From write to the node applying it", ax=right)
plt.show()
for label, results in sweep.items():
    first = next((r.write_rate for r in results if r.saturated), None)
    print(f"{label:<14} saturated first at {first:g} writes/s" if first else
          f"{label:<14} never saturated up to {rates[-1]:,} writes/s")

# %% [markdown]
# ## 3 · Where one Redis saturates
#
# For each design and fleet size, the write rate at which the busiest shard's CPU reaches
# 1, found by bisection on the model (`cachelab.sim.fleet_saturation.saturation`, about
# 2,000 writes a step). For broadcast this is `1 / cost_per_write` exactly; under
# tracking the cost per write falls as writes speed up (fewer reads come between two
# writes of a key), which only the model finds. Reads that miss locally go to Redis too,
# and are *not* in this table: section 5 counts them.

# %%
started = time.perf_counter()
table = saturation_table(["broadcast", "tracking"], NODE_COUNTS, calibration=CAL,
                         read_rate=READ_RATE, seed=SEED)
table += saturation_table(["striped"], NODE_COUNTS, calibration=CAL, read_rate=READ_RATE,
                          seed=SEED, stripes=STRIPES, shards=SHARDS)
print("calibration:", CAL.describe())
print(f"{'mode':<10} {'nodes':>6} {'writes/s at CPU 1':>18} {'msgs/write':>11} {'CPU us/write':>13}")
for row in table:
    print(f"{row.mode:<10} {row.nodes:>6} {row.write_rate:>18,.0f} {row.messages_per_write:>11.1f} "
          f"{row.cost_us:>13.1f}")
print(f"({len(table)} bisections in {time.perf_counter() - started:.1f} s of real time)")
scaling_lines({mode: [(r.nodes, r.write_rate) for r in table if r.mode == mode]
               for mode in ("broadcast", "tracking", "striped")},
              xlabel="nodes", ylabel="writes/s at saturation", title="Where one Redis saturates")
plt.show()

# %%
fleet = Fleet(1000, mode="striped", stripes=STRIPES, shards=SHARDS, calibration=CAL)
even = Fleet(1000, mode="striped", stripes=STRIPES, shards=SHARDS, calibration=CAL,
             placement="round_robin", zipf=0.0)
print("share of writes per shard, Redis Cluster slots, Zipf 0.99:",
      [f"{x:.1%}" for x in fleet.shard_shares()])
print("share of writes per shard, round robin, uniform keys:    ",
      [f"{x:.1%}" for x in even.shard_shares()])
one = next(r for r in table if r.mode == "broadcast" and r.nodes == 1000)
three = next(r for r in table if r.mode == "striped" and r.nodes == 1000)
print(f"at 1,000 nodes striping over {SHARDS} shards raises the saturation point "
      f"{three.write_rate / one.write_rate:.2f}x (an even split would give {SHARDS}x)")

# %% [markdown]
# Striping divides the load by the number of shards only as well as the keys divide: the
# busiest shard sets the limit. More stripes than shards (hundreds, round robin) make the
# split even; a single hot key cannot be split at all.

# %% [markdown]
# ## 4 · What batching buys, and what it costs
#
# Hazelcast's near cache does not send an invalidation per write: it batches them, one
# message per 100 invalidations or per 10 s, whichever comes first. Here each write still
# runs its script; its invalidation waits in a batcher. *Per writer*: every node batches
# its own writes (as a client-side library would); *shared*: one batcher per server (as
# if the write script queued them). The fleet: 1,000 nodes writing `WRITE_RATE` times a
# second in all.

# %%
variants = {
    "no batching": {},
    "100 or 10 s, per writer": {"batch": (100, 10.0)},
    "100 or 10 s, shared": {"batch": (100, 10.0, "shard")},
    "100 or 100 ms, shared": {"batch": (100, 0.1, "shard")},
}
batched = {label: Fleet(1000, write_rate=WRITE_RATE, read_rate=READ_RATE, calibration=CAL,
                        seed=SEED, **options).run(30.0)  # 30 s: three 10 s windows
           for label, options in variants.items()}
batch_bars({label: (r.messages_per_write, r.staleness_p99) for label, r in batched.items()})
plt.show()
plain = batched["no batching"]
print(f"{'':<26} {'publishes/s':>11} {'msgs/write':>10} {'saved':>7} {'stale p50':>10} {'stale p99':>10}")
for label, r in batched.items():
    saved = 1 - r.deliveries / r.writes / plain.messages_per_write
    print(f"{label:<26} {r.publishes_per_s:>11.1f} {r.messages_per_write:>10.1f} {saved:>7.1%} "
          f"{r.staleness_p50:>9.3f}s {r.staleness_p99:>9.3f}s")

# %% [markdown]
# In the run above, a shared batcher fills its hundred quickly at this write rate and
# saves most of the messages for a staleness of about the time it takes to fill. Per
# writer, each node writes too rarely to fill a batch: its timer fires with a handful of
# invalidations, and the fleet waits up to the whole window for a small saving. Batching
# pays where one batcher sees many writes; the window is then the staleness bound you
# accept, the same trade a TTL makes.

# %% [markdown]
# ## 5 · Reads: the other half of the load
#
# The fleet model puts only writes on the server's queue. Every local miss is a `GET` to
# Redis too; its hit rate comes from Che's approximation for each node's LRU, with
# invalidations dropping entries. Cache size changes this load, but not whom tracking
# tells: Redis cannot hear of a client's local evictions, so it tells every node that
# read the key since its last write, cached or not.

# %%
for nodes in (1000, 10_000):
    for size in (100, 1000, 5000):
        r = run(nodes, mode="tracking", cache_size=size)
        print(f"{nodes:>6} nodes, cache {size:>5}: hit rate {r.hit_rate:6.1%}, "
              f"{r.server_reads_per_s:>9,.0f} reads/s reach Redis "
              f"({r.server_reads_per_s * CAL.publish_us * 1e-6:5.2f} CPU s/s at one command's cost), "
              f"tracking messages per write {r.messages_per_write:7.1f}")
print(f"a node's hit rate cannot pass reads / (reads + writes) = "
      f"{READ_RATE / (READ_RATE + WRITE_RATE):.1%} here: each key is written, fleet-wide, "
      f"{WRITE_RATE / READ_RATE:g}x as often as one node reads it")

# %% [markdown]
# Reads set their own ceiling: where the CPU column above passes 1, one Redis cannot serve
# the fleet's misses at all, whatever the invalidations cost, and the saturation table of
# section 3 is optimistic. A bigger local cache helps only up to the bound printed last:
# an entry that the fleet's writes keep invalidating cannot be hit.

# %% [markdown]
# ## Recap
#
# - A broadcast write costs one delivery per node: the load grows with the fleet, and the
#   deliveries, not the script, dominate a write's cost beyond a few dozen nodes.
# - Tracking's cost follows how many nodes read a key between two writes of it, not how
#   many nodes there are.
# - Striping over K shards spreads the same deliveries over K servers, as evenly as the
#   keys and the slots allow; the busiest shard sets the limit.
# - Batching trades messages for staleness bounded by its window, and saves only where
#   one batcher sees many writes.
# - The figures are a model's, calibrated on one machine: the printed calibration says
#   which, and a real server can be measured in place with `REDIS_URL`.
#
# ## Exercises
#
# 1. In section 1, why does the striped fleet's busiest shard carry more than a third of
#    broadcast's load?
# 2. Under tracking, what happens to messages per write when each node reads ten times
#    as often? When each write comes ten times as often?
# 3. A team proposes per-writer batching with Hazelcast's defaults for a fleet of 1,000
#    nodes writing 100 times a second in all. What do they gain and what do they lose?
#
# <details><summary>Worked answers</summary>
#
# 1. Two reasons: 16 stripes hashed into Redis Cluster's slots do not split evenly over
#    three shards, and Zipf popularity gives the stripe of the hottest key a large share
#    of the writes by itself (section 3 prints both shares).
# 2. More reads: more nodes read each key between two writes, so more messages per write
#    (up to the whole fleet). More writes: fewer reads fit between two writes of a key, so
#    fewer messages per write, though more writes.
# 3. Each node writes a tenth of a time per second, so a batch of 100 would take 1,000 s
#    to fill: the 10 s timer sends every batch, with the one or two invalidations that came
#    in its window. They save about half the messages and make every invalidation up to
#    10 s late (section 4's per-writer row). A shared batcher saves nearly all of them for
#    the time it takes to fill; a shorter window bounds the staleness lower.
#
# </details>
#
# Back to [09 · keys that anyone writes](09-keys-anyone-writes.ipynb), or to the start:
# [00 · quickstart](00-quickstart.ipynb).
