# %% [markdown]
# # 09 · Keys that anyone writes: tracking, streams, and a cache that measures itself
#
# Every notebook so far had cachelab write every key. Real keys have other writers: a
# service in another language, a nightly script, someone at `redis-cli`. Broadcast
# pub/sub never hears of them. This notebook puts four answers side by side:
#
# 1. **`tracking`**: the server itself tells each node which keys changed
#    (`CLIENT TRACKING`), whoever wrote them;
# 2. **default against BCAST**: whom the server tells, and what that costs as the fleet
#    grows;
# 3. **`stream`**: messages that wait for a node that blinked, so it replays instead of
#    revalidating;
# 4. **`verify=`**: a node that samples its own hits against Redis and reports its
#    staleness, with a confidence interval, checked here against the checker's truth.
#
# The simulator runs the real `TrackingNode` and stream code; the cells at the end run on
# a real server when `REDIS_URL` is set (fakeredis cannot track keys).

# %% tags=["parameters"]
REDIS_URL = None  # e.g. "redis://localhost:6379/0"; None reads $REDIS_URL, else embedded fakeredis
OPS = 20_000  # requests per run, at 10,000 requests/s: two virtual seconds
NODES = 4
SEED = 9

# %%
import os

import matplotlib.pyplot as plt

from cachelab.check import stale_reads
from cachelab.sim import Network, Simulation
from cachelab.sim.workloads import mix, zipf_picker

REDIS_URL = REDIS_URL or os.environ.get("REDIS_URL")


def run(strategy, nodes=NODES, external=0.5, ttl=1.0, network=None, **options):
    """A Zipf workload where a share of the writes come from outside cachelab."""
    workload = mix(OPS, nodes, zipf_picker(500, 1.0), read_ratio=0.9, external=external,
                   seed=SEED)
    sim = Simulation(nodes=nodes, strategy=strategy, seed=SEED, ttl=ttl, progress=False,
                     network=network or Network(delay=0.001), **options)
    return sim.run(workload=workload)


# %% [markdown]
# ## 1 · An outside writer: `invalidate` is stale until the TTL, `tracking` is not
#
# Half of the writes come from an *outside* writer who tells no one. Two kinds:
#
# - **through cachelab's script, without its message** (`outside="script"`): the write
#   still takes a sequence number, so the next message or heartbeat shows a versioned
#   node the gap, and it repairs: stale for milliseconds;
# - **plain** (`outside="plain"`): a service that knows nothing of cachelab replaces the
#   value. No number, no message: `invalidate` and `update` nodes serve the old value
#   until their TTL (1 s here) ends the entry. `tracking` nodes are told by the server
#   itself, and are stale only while the invalidation is on the wire (1 ms here).

# %%
runs = {
    "invalidate, script writer": run("invalidate"),
    "invalidate, plain writer": run("invalidate", outside="plain"),
    "tracking, plain writer": run("tracking", outside="plain"),
    "tracking BCAST, plain writer": run("tracking", outside="plain", bcast=True),
}
fig, ax = plt.subplots(figsize=(7, 3))
for label, result in runs.items():
    ages = sorted(s * 1000 for _, s in stale_reads(result.history))
    ax.plot(ages, [i / max(1, len(ages)) for i in range(len(ages))], label=label)
ax.set_xscale("symlog")
ax.set_xlabel("staleness of a stale read (ms)")
ax.set_ylabel("share of stale reads")
ax.legend(fontsize=8)
plt.show()
print(f"{'':<30} {'stale reads':>11} {'p99':>9} {'max':>9} {'hit rate':>9}")
for label, result in runs.items():
    rep = result.report
    print(f"{label:<30} {rep.stale_reads:>11} {rep.staleness_p99 * 1000:>7.1f}ms "
          f"{rep.staleness_max * 1000:>7.1f}ms {rep.hit_rate:>9.1%}")

# %% [markdown]
# The staleness of `invalidate` under a plain writer is bounded by the TTL and by nothing
# else; tracking's is bounded by the delivery delay. A node that does not track must
# choose a TTL short enough for its readers, and pay for it in misses.

# %% [markdown]
# ## 2 · Whom the server tells: default against BCAST
#
# In the default mode the server remembers, per node, the keys it read, and tells only
# those nodes, once, of the next write. In BCAST mode it tells every node of every write
# under the prefix. Messages per write, as the fleet grows (writes by the outside writer
# only, so no node is spared its own):

# %%
sizes = (4, 16, 64)
per_write = {mode: [] for mode in ("default", "BCAST")}
for n in sizes:
    for mode in per_write:
        result = run("tracking", nodes=n, external=1.0, bcast=mode == "BCAST")
        per_write[mode].append(result.delivered / result.report.writes)
fig, ax = plt.subplots(figsize=(6, 3))
for mode, values in per_write.items():
    ax.plot(sizes, values, marker="o", label=mode)
ax.set_xlabel("nodes")
ax.set_ylabel("invalidations per write")
ax.set_xscale("log", base=2)
ax.legend()
plt.show()
for mode, values in per_write.items():
    print(mode, " ".join(f"{n} nodes: {v:.1f}" for n, v in zip(sizes, values)))

# %% [markdown]
# BCAST grows with the fleet (one message per node per write). The default mode grows
# with *sharing*: a write costs one message per node that read the key since its last
# write. BCAST needs no per-key memory on the server and fits a small fleet that shares
# most keys; the default fits a large fleet with its own hot sets.

# %% [markdown]
# ## 3 · A blip: flush, repair, or replay the stream
#
# Pub/sub is at most once: whatever was published while a subscriber was away is gone.
# Node `b` holds 100 warm keys when its connection drops for 200 ms, while `a` changes 5
# of them. On pub/sub, `b` must flush (every key reloaded) or repair (check its keys
# against Redis, 25 a round trip, and reload the changed ones). With `strategy="stream"`
# the messages wait in a capped Redis Stream: `b` reads on from its last entry id, which
# drops the 5 changed keys, and trusts the other 95 again with no round trip at all.

# %%
from cachelab.sim.scenarios import CATALOGUE

blip = CATALOGUE["blip"]
print(f"{'':<58} {'round trips':>11} {'checks':>6} {'misses':>7} {'restored':>8} {'stale':>5}")
rows = {}
for variant in blip.variants:
    result = variant.run()
    b = result.stats["b"]
    rows[variant.label] = blip.measure(result)
    print(f"{variant.label:<58} {rows[variant.label]:>11.0f} {b.repair_checks:>6} "
          f"{b.misses:>7} {b.restored:>8} {result.report.stale_reads:>5}")
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(rows), list(rows.values()))
ax.set_xlabel("Redis round trips for b's reads and recovery")
ax.invert_yaxis()
plt.show()

# %% [markdown]
# All three are correct: no stale read. The stream costs each write a little more (an
# `XADD` instead of a `PUBLISH`, and memory for `stream_maxlen` entries), and covers a blip
# as long as the cap holds its messages (10,000 entries at 1,000 writes/s: ten seconds).
# Past that, the first entry a node reads skips numbers: a gap, and it repairs.

# %% [markdown]
# ## 4 · A cache that measures its own staleness: `verify=`
#
# The checker knows the truth because the simulator records every operation. A service
# in production records nothing of the sort. With `verify=0.1`, a node sends one hit in
# ten, off the hit path, to be checked against Redis by a background thread (here, 5 ms
# of virtual time later); `stats` then carries the stale fraction it measured and a 95 %
# confidence interval. Below, on a lossy network with the safeguards that would notice
# loss switched off (so lost invalidations stay lost), the estimate against the checker's
# count of stale hits, for rising loss:

# %%
from cachelab.stats import wilson

losses = (0.0, 0.01, 0.03, 0.05)
truths, estimates, lows, highs = [], [], [], []
for loss in losses:
    result = Simulation(nodes=NODES, seed=SEED, progress=False, verify=0.1, verify_delay=0.005,
                        network=Network(delay=0.002, jitter=0.001, loss=loss),
                        gap_detection=False, repair=False).run(ops=OPS)
    hits = sum(1 for op in result.history if op.op == "read" and op.hit)
    truths.append(sum(1 for op, _ in stale_reads(result.history) if op.hit) / hits)
    k = sum(s.verified_stale for s in result.stats.values())
    n = sum(s.verified for s in result.stats.values())
    low, high = wilson(k, n)
    estimates.append(k / n if n else 0.0)
    lows.append(low)
    highs.append(high)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot([f"{x:.0%}" for x in losses], truths, "o-", label="checker: stale share of hits")
ax.errorbar([f"{x:.0%}" for x in losses], estimates,
            yerr=[[e - lo for e, lo in zip(estimates, lows)], [hi - e for e, hi in zip(estimates, highs)]],
            fmt="s", capsize=4, label="verify=0.1: estimate, 95 % interval")
ax.set_xlabel("messages lost")
ax.set_ylabel("stale share of hits")
ax.legend(fontsize=8)
plt.show()
for loss, truth, est, low, high in zip(losses, truths, estimates, lows, highs):
    print(f"loss {loss:4.0%}: checker {truth:6.2%}   sampler {est:6.2%} [{low:6.2%}, {high:6.2%}]")

# %% [markdown]
# The interval covers sampling error only. Between the hit and the check the node may
# learn of the change and drop the key; such samples are not judged, and they lean stale,
# so with a lag the estimate runs a little low (docs/protocol.md measures it). Meta's
# Polaris and Uber's Cache Inspector measure caches this way, from outside; here the
# node reports it itself, in `node.stats.stale_estimate` and `node.stats.stale_interval`.

# %% [markdown]
# ## 5 · On a real server
#
# With `REDIS_URL` set, the cell below runs real `TrackingNode`s on your server. A plain
# redis-py client, outside cachelab, runs `SET`, `EXPIRE` and `DEL`; after each,
# every node's next read returns what Redis holds. (`settle()` sends a PING down each
# node's invalidation connection and waits for its PONG, which the server queues behind
# every invalidation it sent before.) The embedded fakeredis has no `CLIENT TRACKING`, so
# without `REDIS_URL` the cell says so and stops there.

# %%
import redis

import cachelab

if REDIS_URL is None:
    print("tracking skipped: the embedded fakeredis has no CLIENT TRACKING "
          "(set REDIS_URL to a Redis 6+ or Valkey server to run this cell)")
else:
    prefix = "nb09:"
    outside = redis.Redis.from_url(REDIS_URL)
    with cachelab.Cluster(3, url=REDIS_URL, strategy="tracking", prefix=prefix) as cluster:
        outside.set(prefix + "k", "v1")
        print("first reads:", [node.get("k") for node in cluster.nodes])
        steps = [("SET k v2", lambda: outside.set(prefix + "k", "v2")),
                 ("EXPIRE k 100", lambda: outside.expire(prefix + "k", 100)),
                 ("DEL k", lambda: outside.delete(prefix + "k")),
                 ("SET k v3", lambda: outside.set(prefix + "k", "v3"))]
        for label, write in steps:
            write()
            cluster.settle()
            seen = [node.get("k") for node in cluster.nodes]
            print(f"after {label:<13} Redis holds {outside.get(prefix + 'k')!r:<6} nodes read {seen}")
        print({node.name: node.stats.invalidations_received for node in cluster.nodes})
    outside.close()

# %% [markdown]
# ## Recap
#
# - Broadcast pub/sub hears only writes that publish. A writer through cachelab's script
#   that publishes nothing is still caught, by the sequence number it took; a writer who
#   knows nothing of cachelab is not, and a versioned node serves its old value until the
#   TTL.
# - `tracking` asks the server: it hears every writer, with no versions to carry, so it
#   flushes where the others repair. The default mode tells only nodes that read a key;
#   BCAST tells every node, and grows with the fleet.
# - `stream` keeps the messages: a blip costs a replay, not a repair or a flush, as long as
#   the stream's cap covers it.
# - `verify=` lets a node measure its own staleness, with an interval that held the
#   checker's count here.
#
# ## Exercises
#
# 1. In section 2, why does the default mode's cost per write grow so slowly from 16 to 64
#    nodes, when BCAST's grows fourfold?
# 2. A tracking node reads a key, and the key then expires in Redis. Nobody writes it. When
#    does the node stop serving it, and why does it not wait for the server's
#    invalidation?
# 3. Why does `tracking` refuse `noloop=True` in the default mode?
#
# <details><summary>Worked answers</summary>
#
# 1. A write is told to the nodes that read the key since its last write. With a Zipf
#    workload most writes hit hot keys, which few nodes manage to read between two writes
#    of them; past some fleet size, the readers per write stop growing with the fleet.
#    BCAST tells every node of every write.
# 2. At the key's own expiry: a tracking read sends `PTTL` with the `GET`, and the entry's
#    deadline is counted from before the request. The server sends an invalidation only
#    when its expiry cycle (or a reader) deletes the key, which may be later.
# 3. The server invalidates keys when its tracking table is full. In the default mode it
#    does not tell a NOLOOP connection of the evictions its own reads cause: the node would
#    keep entries the server no longer tracks, and never hear of their next write
#    (`tests/test_tracking.py` shows the server doing it).
#
# </details>
#
# Next: [10 · scaling out](10-scaling-out.ipynb); or back to the start: [00 · quickstart](00-quickstart.ipynb).
