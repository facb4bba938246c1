# %% [markdown]
# # 05 · Failures: loss, partitions, restarts, and what a TTL buys
#
# Notebook 04 scripted each failure once. Here they are swept and timed, on a cluster
# serving a steady Zipf workload, with the questions an operator asks:
#
# 1. **Loss**: how long does one lost invalidation hurt? (until the next message, if the
#    node can tell; until the TTL otherwise)
# 2. **Partitions**: a node *told* it is disconnected versus a node cut off *silently*;
#    how long after the link comes back are its reads fresh again (recovery time)?
# 3. **Restarts and blips**: a node that restarts, and a Redis that restarts and forgets
#    its sequence numbers. What recovery costs: a flush, a repair, or a replay.
# 4. **TTL**: the backstop. How much staleness it prevents and how many hits it costs.

# %% tags=["parameters"]
REDIS_URL = None  # e.g. "redis://localhost:6379/0"; None reads $REDIS_URL, else embedded fakeredis
OPS = 20_000  # requests per run, at 10,000 requests/s: two virtual seconds
NODES = 4
SEED = 5

# %%
import os

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from cachelab.check import stale_reads
from cachelab.lab.facts import heartbeat_detection, heartbeat_interval, hit_rate_between
from cachelab.lab.viz import hit_rate_over_time, staleness_histogram, store_load
from cachelab.sim import Fault, Network, Partition, Simulation
from cachelab.sim.workloads import zipf

REDIS_URL = REDIS_URL or os.environ.get("REDIS_URL")
B = 1  # node b, the victim


def run(keys=1_000, read_ratio=0.95, network=None, faults=(), **options):
    """A Zipf workload on NODES simulated nodes (seeded: every run is reproducible)."""
    workload = zipf(OPS, NODES, keys=keys, read_ratio=read_ratio, seed=SEED)
    sim = Simulation(nodes=NODES, seed=SEED, network=network or Network(delay=0.001),
                     faults=faults, progress=False, **options)
    return sim.run(workload=workload)


LASTING = 0.01  # staleness beyond the normal propagation window (a few ms here)


def lasting(result, node):
    """``node``'s stale reads that were behind by more than LASTING seconds."""
    return [(op, s) for op, s in stale_reads(result.history) if op.node == node and s > LASTING]


def recovery(result, node, healed):
    """Seconds from ``healed`` until ``node``'s last lasting stale read (0: none after)."""
    late = [op.start for op, _ in lasting(result, node) if op.start >= healed]
    return max(late, default=healed) - healed


# %% [markdown]
# ## 1 · Loss: one lost message hurts until the next one
#
# With 1 % of deliveries lost, a node that misses an invalidation serves the old value
# until something tells it. Gap detection makes *any* next message that something, so the
# damage lasts about one inter-message gap. The sentence under the table is written by
# the cell from the runs: how the count and the length of the stale reads move with the
# write rate.

# %%
lossy = Network(delay=0.001, loss=0.01)
rates = {0.02: "2 % writes", 0.05: "5 % writes", 0.2: "20 % writes"}
by_rate = {label: run(read_ratio=1 - w, network=lossy) for w, label in rates.items()}
blind = run(network=lossy, gap_detection=False)
staleness_histogram({**{label: [s for _, s in stale_reads(r.history)] for label, r in by_rate.items()},
                     "5 % writes, no gap detection": [s for _, s in stale_reads(blind.history)]})
plt.show()
print(f"{'':<30} {'stale reads':>11} {'p99':>9} {'max':>9}")
for label, r in {**by_rate, "5 % writes, no gap detection": blind}.items():
    rep = r.report
    print(f"{label:<30} {rep.stale_reads:>11} {rep.staleness_p99 * 1000:>7.1f}ms {rep.staleness_max * 1000:>7.1f}ms")
counts = [r.report.stale_reads for r in by_rate.values()]
worst = max(r.report.staleness_max for r in by_rate.values())
display(Markdown(
    f"From {min(rates) * 100:g} % to {max(rates) * 100:g} % writes the stale reads went "
    f"{' → '.join(map(str, counts))}: they {'rise' if counts[-1] > counts[0] else 'do not rise'} "
    "with the write rate, because every write opens a propagation window and every message "
    f"can be lost. Each stays short: the worst at any write rate lasted {worst * 1000:.1f} ms. "
    f"Without gap detection the worst lasted {blind.report.staleness_max * 1000:.0f} ms."))

# %% [markdown]
# ## 2 · Partitions: told, or silent
#
# Node `b` loses its subscription from 0.5 s to 1.0 s.
#
# - **told** (`disconnect` fault): the bus reports it, `b` trusts nothing it holds and
#   caches nothing until it is back, then repairs. No stale read at all, at the price of
#   0.5 s of uncached reads.
# - **silent** (a partition: a half-open TCP connection, nothing tells `b`): `b` serves
#   what it has. Once the link is back, the first message shows a sequence gap and `b`
#   repairs. (On a real server the heartbeat would tell `b` even with no message at all,
#   within the time printed below; the simulator has none.) Without gap detection only
#   the TTL ends it.

# %%
start, end = 0.5, 1.0
silent = Network(delay=0.001, partitions=[Partition(B, start, end)])
cases = {
    "told (disconnect)": run(faults=[Fault(start, "disconnect", B, end - start)]),
    "silent, gap detection": run(network=silent),
    "silent, no gap detection": run(network=silent, gap_detection=False),
    "silent, no gap detection, ttl 0.2 s": run(network=silent, gap_detection=False, ttl=0.2),
}
interval = heartbeat_interval()
print(f"a real node's heartbeat (every {interval:g} s) notices a deaf subscription within "
      f"{heartbeat_detection(interval):.1f} s at worst")
print(f"{'':<38} {'b: reads > 10 ms stale':>22} {'worst':>9} {'recovery after heal':>20}")
for label, r in cases.items():
    on_b = lasting(r, "b")
    worst = max((s for _, s in on_b), default=0.0)
    print(f"{label:<38} {len(on_b):>22} {worst * 1000:>7.1f}ms {recovery(r, 'b', end) * 1000:>18.1f}ms")

# %% [markdown]
# The hit rate of `b` over time tells the same story from the other side: the told node
# gives up its cache for the outage (a dip to zero; repair keeps what did not change when
# it returns), the silent one keeps its hit rate and pays in stale reads.

# %%
hit_rate_over_time({label: [op for op in r.history if op.node == "b"] for label, r in cases.items()},
                   bins=40)
plt.axvspan(start, end, color="0.9", zorder=0)
plt.title("Node b's hit rate; the grey band is the outage")
plt.show()

# %% [markdown]
# ## 3 · Restarts
#
# A **node restart** loses that node's cache: it comes back cold and refills from Redis.
# Nothing is stale, the cost is misses. A **Redis restart** is worse: the data *and the
# sequence counter* are gone, every subscriber is disconnected, and when they resubscribe
# every node finds a new *incarnation* of the counter. It forgets its tombstones, because
# versions restart from zero, and checks what it holds against Redis (repair, below):
# the data is gone, so everything is dropped at once, which is a herd on Redis
# (notebook 06).
#
# The nodes see Redis's real sequence numbers, which start again at 1. The simulator's
# history does not: it goes on numbering across the restart (a version after it is
# Redis's sequence number plus an offset above every earlier version), and it records the
# restart as a delete of every key Redis lost. So the checker can compare versions across
# the restart. A read that finds a key gone after the restart is fresh: Redis lost the
# data, the cache served nothing stale. A node that still serves a value from before the
# restart is stale from the moment of the restart. (Those deletes count among the
# report's writes.)
#
# Two more runs show what the safeguards are worth here: one without the reconnect flush
# (the node keeps trusting its cache while it is disconnected; gap detection still
# notices the new incarnation when it resubscribes), and one with neither safeguard.

# %%
redis_restart = [Fault(0.8, "redis_restart", 0, 0.1)]
restarts = {
    "steady": run(),
    "node b crashes at 0.8 s (back at 1.0 s)": run(faults=[Fault(0.8, "crash", B, 0.2)]),
    "Redis restarts at 0.8 s (100 ms outage)": run(faults=redis_restart),
}
unsafe = {
    "  ... no reconnect flush": run(faults=redis_restart, reconnect_flush=False),
    "  ... no reconnect flush, no gap detection": run(faults=redis_restart, reconnect_flush=False,
                                                      gap_detection=False),
}
fig, axes = plt.subplots(1, 2, figsize=(13, 4), layout="constrained")
hit_rate_over_time({label: r.history for label, r in restarts.items()}, bins=40, ax=axes[0])
store_load({label: r.store_reads for label, r in restarts.items()}, bin_width=0.02, what="Redis reads",
           ax=axes[1])
plt.show()
print(f"{'':<44} {'hit rate':>8} {'peak reads':>10} {'stale reads':>11} {'nines':>5} "
      f"{'> 10 ms':>7} {'worst':>9}")
for label, r in {**restarts, **unsafe}.items():
    rep = r.report
    longer = len([s for _, s in stale_reads(r.history) if s > LASTING])
    print(f"{label:<44} {rep.hit_rate:>8.1%} {r.metrics(0.02)['peak_store_reads']:>10} "
          f"{rep.stale_reads:>11} {rep.nines:>5.2f} {longer:>7} {rep.staleness_max * 1000:>7.1f}ms")
print("(peak reads: the most Redis reads in one 20 ms window)")
steady, restarted = restarts["steady"], restarts["Redis restarts at 0.8 s (100 ms outage)"]
worst_unsafe = unsafe["  ... no reconnect flush, no gap detection"]
longer_restart = len([s for _, s in stale_reads(restarted.history) if s > LASTING])
last_read = max(op.start for op in worst_unsafe.history if op.op == "read")
display(Markdown(
    f"With both safeguards, the Redis restart's reads stale beyond 10 ms: {longer_restart}; "
    f"its nines are {restarted.report.nines:.2f}, against {steady.report.nines:.2f} in the "
    "steady run. Its stale reads are the kind every run has (a peer reading in the 1 ms "
    "before an invalidation lands). Without either safeguard the worst stale read is "
    f"{worst_unsafe.report.staleness_max:.2f} s behind, and the last read of the run is at "
    f"{last_read:.2f} s, {last_read - 0.8:.2f} s after the restart."))

# %% [markdown]
# What the restart costs with both safeguards is the recovery: the hit-rate dip and the
# burst of Redis reads. Without the reconnect flush,
# the nodes keep serving their entries during the outage, values Redis no longer holds,
# until they resubscribe and notice the new incarnation. Without either safeguard it is
# far worse, and lasts: the nodes keep their old entries, and even reject the new writes'
# messages as outdated (their sequence numbers are smaller), so a key stays stale until
# the new numbers overtake its old one or a TTL ends it (compare the two times above).
# That is why every message and every reply names its incarnation.

# %% [markdown]
# ### Flush versus repair
#
# A flush is simple and always correct, and it costs in proportion to the cache: every
# entry becomes a miss, and every node refills at once. Since protocol v2 a node
# **repairs** instead: on a hint of loss (a gap, a reconnect, a new incarnation) its
# entries become *suspect*. A suspect is never served, and the node checks suspects
# against Redis, 256 keys a round trip: Redis answers each key's version and a digest of
# its value, and the node keeps the entries whose value is unchanged, and drops the others.
# That is as exact as a flush, and what was unchanged stays warm.
#
# Here every node's subscription drops for 50 ms at t = 1 s (a network blip: Redis keeps
# its data), flush against repair, and the Redis restart of above both ways. The store
# load counts every Redis round trip: reads, and repair's checks.

# %%
blip = [Fault(1.0, "disconnect", n, 0.05) for n in range(NODES)]
recoveries = {
    "blip, flush": run(faults=blip, repair=False),
    "blip, repair": run(faults=blip),
    "Redis restart, flush": run(faults=redis_restart, repair=False),
    "Redis restart, repair": run(faults=redis_restart),
}


def round_trips(result):
    """The time of every Redis round trip: each read, and each repair check."""
    return sorted([*result.store_reads, *(t for t, _ in result.store_checks)])


fig, axes = plt.subplots(1, 2, figsize=(13, 4), layout="constrained")
blips = {label: r for label, r in recoveries.items() if label.startswith("blip")}
hit_rate_over_time({label: r.history for label, r in blips.items()}, bins=40, ax=axes[0])
store_load({label: round_trips(r) for label, r in blips.items()}, bin_width=0.02,
           what="Redis round trips", ax=axes[1])
plt.show()
print(f"{'':<24} {'hit rate':>8} {'reads':>7} {'peak':>5} {'checks':>6} {'keys':>6} "
      f"{'kept':>6} {'stale':>6} {'> 10 ms':>7}")
for label, r in recoveries.items():
    m, rep = r.metrics(0.02), r.report
    kept = sum(s.repair_kept for s in r.stats.values())
    longer = len([s for _, s in stale_reads(r.history) if s > LASTING])
    print(f"{label:<24} {rep.hit_rate:>8.1%} {m['store_reads']:>7} {m['peak_store_reads']:>5} "
          f"{m['repair_checks']:>6} {m['repair_keys']:>6} {kept:>6} {rep.stale_reads:>6} "
          f"{longer:>7}")
print("(reads: Redis reads; peak: the most in one 20 ms window; checks: repair round trips)")
out, back = (1.0, 1.05), (1.05, 1.1)
during = {label: hit_rate_between(r.history, *out) for label, r in blips.items()}
after = {label: hit_rate_between(r.history, *back) for label, r in blips.items()}
checks = recoveries["blip, repair"].metrics(0.02)["repair_checks"] / NODES
lasting_reads = {label: len([s for _, s in stale_reads(r.history) if s > LASTING])
                 for label, r in recoveries.items()}
display(Markdown(
    f"During the blip no node serves from its cache: the hit rate is "
    f"{during['blip, repair']:.0%} with repair and {during['blip, flush']:.0%} with a flush "
    "(a node told it is disconnected trusts nothing it holds). In the 50 ms after it, repair "
    f"is back at {after['blip, repair']:.0%} (it was {hit_rate_between(blips['blip, repair'].history, 0.95, 1.0):.0%} "
    f"just before), for {checks:.1f} repair round trips per node; the flush is at "
    f"{after['blip, flush']:.0%}, refilling its cache one miss at a time. "
    + ("Neither mode adds a lasting stale read (none beyond 10 ms in any of the four runs)."
       if not any(lasting_reads.values()) else
       f"Reads stale beyond 10 ms: {lasting_reads}.")))

# %% [markdown]
# After a Redis restart every value is gone, so repair drops every value a node held, as
# a flush does, and pays its checks on top; what it keeps are the cached absences (keys
# read and found missing), which the restart left true. Repair pays off when data
# outlives the blip, the common case.
#
# A third way, **replay**, would publish each change to a Redis Stream as well, and let a
# node that reconnects read what it missed from its last position: its cost is the
# *writes missed*, not the cache, and it needs no check at all while the stream still
# holds that position: that is the `stream` strategy (notebook 09). The arithmetic, for a node of
# 10,000 entries in a namespace of 1,000 writes/s:

# %%
cache_entries, writes_per_s, batch = 10_000, 1_000, 256
print(f"{'outage':>8} {'flush: reloads':>15} {'repair: checks':>15} {'replay: messages':>17}")
for outage in (0.05, 0.5, 5, 60):
    checks = -(-cache_entries // batch)
    print(f"{outage:>7}s {cache_entries:>15,} {checks:>15,} {int(outage * writes_per_s):>17,}")
print("(repair also reloads the entries it drops: at most the keys written meanwhile)")

# %% [markdown]
# ## 4 · What a TTL buys
#
# With gap detection off and 1 % loss (the naive design plus a TTL), the TTL is the only
# thing that ends a stale entry. It bounds the worst staleness by itself, and costs hits
# wherever it is shorter than the time between two reads of a key.

# %%
ttls = [0.01, 0.03, 0.1, 0.3, 1.0]
by_ttl = {ttl: run(network=lossy, gap_detection=False, ttl=ttl) for ttl in ttls}
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
ax.plot(ttls, [r.report.staleness_max for r in by_ttl.values()], "o-", label="worst staleness (s)")
ax.plot(ttls, ttls, ":", color="0.5", label="staleness = TTL")
ax.set(xscale="log", yscale="log", xlabel="TTL (s)", ylabel="worst staleness (s)",
       title="TTL against staleness and hit rate (1 % loss, no gap detection)")
twin = ax.twinx()
twin.plot(ttls, [r.report.hit_rate for r in by_ttl.values()], "s--", color="tab:green", label="hit rate")
twin.set(ylabel="hit rate", ylim=(0, 1))
ax.legend(loc="upper left", fontsize="small")
twin.legend(loc="lower right", fontsize="small")
plt.show()

# %% [markdown]
# The worst staleness tracks the TTL: it is a *bound*, independent of why the entry went
# stale. That is why cachelab keeps a TTL as a backstop even with every other safeguard
# on: it covers the failures nobody predicted, such as an external writer (notebook 04).
#
# ## On real nodes: cut a node off, write, heal
#
# The control panel's gate (notebook 02) does this to real nodes on fakeredis or your
# Redis: node `b` is told its connection dropped, misses a write, and recovers by
# repairing: `k` changed, so it is dropped; `other` did not, so it stays cached.

# %%
from cachelab.lab.viz.live import LiveCluster

with LiveCluster(3, url=REDIS_URL) as live:
    live.write("a", "k", "v1")
    live.write("a", "other", "same")
    live.settle()
    for name in live.names():
        live.read(name, "k")
        live.read(name, "other")
    live.set_cut("b", True)
    live.write("a", "k", "v2")
    live.settle()
    during = live.read("b", "k")
    live.set_cut("b", False)
    live.settle()
    after = live.read("b", "k")
    stats = live.node("b").stats
print(f"b during the cut: {during!r} (read through Redis, not cached)")
print(f"b after healing:  {after!r}; disconnects {stats.disconnects}, reconnects {stats.reconnects}, "
      f"uncached reads {stats.uncached_reads}")
print(f"b's repair: {stats.repair_checks} round trip(s), kept {stats.repair_kept} (other), "
      f"dropped {stats.repair_dropped} (k), flushes {stats.flushes}")

# %% [markdown]
# ## Recap
#
# - A lost message hurts until the next one, if the node can tell (gap detection), and
#   until the TTL if it cannot.
# - A node *told* it is disconnected trusts nothing it holds and serves nothing stale; a
#   node cut off *silently* serves stale data until a message, a heartbeat or a settle
#   marker shows the gap.
# - A Redis restart resets the sequence numbers: every message and reply names the
#   counter's incarnation, so nodes notice and repair, instead of rejecting new writes as
#   outdated.
# - Repair keeps what did not change: after a blip the cache stays warm, at a few checks
#   per node; after a restart that lost the data it costs as much as a flush.
# - A TTL is a bound, whatever the cause; it costs hits wherever it is shorter than the
#   time between two reads of a key.
#
# ## Exercises
#
# 1. In section 2, why is the told node's recovery time 0?
# 2. Why does a Redis restart without the reconnect flush and without gap detection leave
#    keys stale to the end of the run, although writes go on?
# 3. A cache holds 10,000 entries and sees 1,000 writes/s. For which outages is replaying
#    a stream cheaper than a flush? And than a repair?
#
# <details><summary>Worked answers</summary>
#
# 1. It stopped trusting its cache during the outage (nothing suspect is served) and
#    checked it against Redis when it came back, so it had no entry that could be stale
#    once the link healed.
# 2. The new server numbers its writes from 1 again, below the versions the nodes hold:
#    every new message looks outdated and is ignored, so a stale entry stays until the
#    new numbers overtake the old ones.
# 3. Replay costs one message per missed write, a flush one reload per entry: replay is
#    cheaper while `outage × 1,000/s < 10,000`, under about 10 seconds. Repair costs
#    `10,000 / 256 = 40` round trips plus a reload per key changed meanwhile, so replay
#    beats it only for outages of a few tens of milliseconds; but each check carries 256
#    keys, so in keys moved, replay wins while fewer than 10,000 writes were missed.
#
# </details>
#
# Next: [06 · the thundering herd](06-thundering-herd.ipynb).
