# %% [markdown]
# # 06 · The thundering herd
#
# A hot key is read thousands of times a second, from every node, and almost always from
# the local cache. Then someone writes it. The invalidation reaches every node within a
# millisecond, and for the next few milliseconds *every* read of that key is a miss. Each
# miss goes to Redis, or, in a cache-aside setup where Redis is itself only a cache, to
# the database. That burst is the herd, and it arrives exactly when the key is hottest.
#
# Three defences, measured against peak load:
#
# 1. **single flight** (per node, on by default in CacheNode): concurrent misses of one key
#    in one process wait for one load instead of starting their own;
# 2. **a lease** across nodes (memcache's idea, modelled in the simulator as a Redis
#    `SET NX PX`): the first node to miss gets to load from the database; the others retry
#    Redis shortly after, and find the value the lease holder stored;
# 3. and, implicitly, **update** instead of invalidate: peers get the new value in the
#    message, so there is no miss at all (notebook 03 showed its cost).

# %% tags=["parameters"]
REDIS_URL = None  # e.g. "redis://localhost:6379/0"; None reads $REDIS_URL, else embedded fakeredis
NODES = 8
READS_PER_S = 20_000  # all on one hot key
DURATION = 1.0  # virtual seconds
WRITE_EVERY = 0.2  # seconds between writes of the hot key
STORE_LATENCY = 0.001  # a Redis round trip
DB_LATENCY = 0.020  # a database read
SEED = 3

# %%
import os

import matplotlib.pyplot as plt

from cachelab.lab.viz import bursts, store_load
from cachelab.sim import Network, Simulation
from cachelab.sim.workloads import every, hot_key, merge

REDIS_URL = REDIS_URL or os.environ.get("REDIS_URL")


def workload(database: bool):
    """Hot-key reads on every node; a write of the key every WRITE_EVERY seconds."""
    reads = hot_key(int(READS_PER_S * DURATION), NODES, hot="hot", share=1.0, read_ratio=1.0,
                    rate=READS_PER_S, seed=SEED)
    writes = [every(WRITE_EVERY, WRITE_EVERY / 2, DURATION, 0, "write", "hot")]
    if database:  # cache-aside: write the database, then invalidate Redis and the nodes
        writes.append(every(WRITE_EVERY, WRITE_EVERY / 2, DURATION, 0, "invalidate", "hot"))
    return merge(reads, *writes)


def run(database: bool = False, **options):
    """One simulated second of the hot key."""
    sim = Simulation(nodes=NODES, seed=SEED, network=Network(delay=0.001), progress=False,
                     store_latency=STORE_LATENCY, db_latency=DB_LATENCY, database=database,
                     **options)
    return sim.run(workload=workload(database))


# %% [markdown]
# ## Redis as the source of truth: misses hit Redis
#
# The writer stores the new value in Redis; every other node evicts and reloads. Without
# single flight, every read that arrives during the reload's round trip starts its own.

# %%
herd = {
    "no single flight": run(single_flight=False),
    "single flight (default)": run(),
}
for name, r in herd.items():
    m = r.metrics(window=0.001)
    print(f"{name:<26} store reads {m['store_reads']:>6,}  peak {m['peak_store_reads']:>3} per ms"
          f"  hit rate {m['hit_rate']:.1%}")

# %% [markdown]
# ## Redis in front of a database: misses hit the database
#
# Now Redis is a cache too (`database=True`): a write updates the database, then
# invalidates the key in Redis and in every node. The first reads after that find nothing
# anywhere and go to the database, which takes 20 ms: a long window for a herd to gather.

# %%
aside = {
    "no single flight": run(database=True, single_flight=False),
    "single flight": run(database=True),
    "single flight + lease": run(database=True, lease=True),
}
writes = int(DURATION / WRITE_EVERY)
first_write = WRITE_EVERY / 2
print(f"{'':<24} {'db loads':>9} {'cold start':>10} {'per write':>9} {'peak/ms':>8} {'store reads':>12} "
      f"{'hit rate':>9}")
for name, r in aside.items():
    m = r.metrics(window=0.001)
    cold = sum(t < first_write for t in r.db_loads)
    print(f"{name:<24} {m['db_loads']:>9,} {cold:>10,} {(m['db_loads'] - cold) / writes:>9,.0f}"
          f" {m['peak_db_loads']:>8} {m['store_reads']:>12,} {m['hit_rate']:>9.1%}")
print(f"({writes} writes; 'cold start': the loads before the first write, left out of 'per write')")
print(f"reads arriving during one database load: {READS_PER_S:,}/s × {DB_LATENCY * 1000:.0f} ms = "
      f"{READS_PER_S * DB_LATENCY:,.0f}")

# %%
# Over the whole second, each write's herd lasts a few milliseconds: drawn over time it
# would be a hairline. So here is each write's burst as a bar: the reads in the 50 ms
# after it (log scale).

# %%
starts = [WRITE_EVERY / 2 + i * WRITE_EVERY for i in range(writes)]
fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), layout="constrained")
bursts({name: r.store_reads for name, r in herd.items()}, starts, 0.05, what="Redis reads",
       ax=axes[0])
axes[0].set_title("Redis reads after each write (Redis is the truth)")
bursts({name: r.db_loads for name, r in aside.items()}, starts, 0.05, what="database reads",
       ax=axes[1])
axes[1].set_title("Database reads after each write (cache-aside)")
plt.show()

# %% [markdown]
# Zoom on one write, in 1 ms bins: the spike is the herd, its width is one load's latency.

# %%
first = WRITE_EVERY / 2
fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
store_load({name: [t for t in r.db_loads if first - 0.005 <= t <= first + 0.05]
            for name, r in aside.items()}, bin_width=0.001, what="database reads", ax=ax)
ax.set_xlim(first - 0.005, first + 0.05)
ax.set_title(f"Database reads around the write at t = {first:g} s")
plt.show()

# %% [markdown]
# Reading the numbers:
#
# - **No single flight**: every read in the 20 ms database window of every node becomes a
#   database read: the hundreds per write of the "per write" column.
# - **Single flight** caps it at one load per node per write: `NODES` loads, whatever the
#   read rate. That is free (no coordination) and always on in CacheNode.
# - **A lease** caps it near one load per *cluster* per write. The price: the losers poll
#   Redis every 2 ms until the winner has stored the value, so Redis reads go *up* while
#   database reads go down. Memcache made the same trade (its leases also stop stale sets,
#   which cachelab's versioned fill guard already handles).
#
# ## Single flight on real nodes
#
# Sixteen threads miss the same key on one real node at the same moment; the loader (the
# "database") takes 200 ms. How many times is it called?

# %%
import threading
import time

import cachelab

calls = []


def slow_loader(key):
    calls.append(key)
    time.sleep(0.2)
    return f"loaded {key}"


with cachelab.Cluster(1, url=REDIS_URL) as cluster:
    node = cluster.nodes[0]
    start = threading.Barrier(16)

    def reader():
        start.wait()
        node.get_or_load("report:2024", slow_loader)

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"16 concurrent misses, loader called {len(calls)} time(s); "
          f"node stats: misses {node.stats.misses}, hits {node.stats.hits}")

# %% [markdown]
# One call (or very rarely two, if a thread arrives after the load finished and the value
# was already invalidated). The threads that arrived while the load was in flight joined
# it. Across processes, that is the lease's job.
#
# ## Exercises
#
# 1. Without single flight, roughly how many database reads should one write cause here?
#    Check against the "per write" column.
# 2. Why does the lease *raise* the number of Redis reads?
# 3. What would the `update` strategy do to this herd, with Redis as the source of truth?
#
# <details><summary>Worked answers</summary>
#
# 1. Every read that arrives during the database load misses: the read rate times the
#    load's latency (the last line under the table), spread over the nodes, each a
#    database read. The "per write" column leaves out the cold start, the loads before
#    the first write, which every node pays once whatever the writes.
# 2. The nodes refused the lease poll Redis every 2 ms until the holder has stored the
#    value: cheap Redis reads replace expensive database reads.
# 3. There would be no herd: peers replace the value from the message instead of
#    evicting it, so their next read is a hit.
#
# </details>
#
# Next: [07 · measuring consistency](07-measuring-consistency.ipynb).
