# %% [markdown]
# # 04 · Races and their fixes
#
# Every failure a near cache is known for, reproduced on purpose, on the simulator, with
# the real CacheNode code. Each scenario of `cachelab.sim.scenarios.CATALOGUE` is a short
# scripted workload (deterministic: no randomness but the seeded network) run under at
# least two variants: a **broken** one, usually the naive design or a safeguard switched
# off, and one or more **fixed** ones. Each scenario names the one metric that tells its
# variants apart, and each fix states the bound it promises.
#
# First one race in slow motion, broken and fixed side by side, then the whole
# catalogue.

# %% tags=["parameters"]
SCENARIO = "stale_set"  # the one animated in slow motion; any key of the table below

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from cachelab.lab.viz import side_by_side, variant_bars
from cachelab.sim.scenarios import CATALOGUE

rows = ["| key | scenario | metric |", "|---|---|---|"]
rows += [f"| `{name}` | {s.title} | {s.metric.replace('_', ' ')} |" for name, s in CATALOGUE.items()]
display(Markdown("The catalogue's scenarios, by key (`CATALOGUE[key]`):\n\n" + "\n".join(rows)))

# %% [markdown]
# ## The stale set, in slow motion: broken on the left, fixed on the right
#
# The race that Facebook's memcache paper calls a *stale set* and that every cache-aside
# tutorial gets wrong. Watch `b`: its read of `k` leaves at 100 ms and its reply (orange)
# lands at 150 ms with version 1. The write of version 2 happened at 110 ms, and its
# invalidation reached `b` at 111 ms, when `b` had nothing to drop. On the left (no
# guard) `b` caches the late reply and serves it for good: every later read is a *STALE
# READ*. On the right the read took a ticket when it left, the invalidation marked the
# ticket, and the late fill is refused (*fill rejected*, in purple); the next read misses
# and fetches version 2. One clock drives both; each side carries the checker's verdict.

# %%
scenario = CATALOGUE[SCENARIO]
display(Markdown(f"**{scenario.title}.** {scenario.explanation}"))
side_by_side(scenario)

# %% [markdown]
# ## The whole catalogue
#
# For each scenario: its explanation, then every variant with the same columns in the
# same order: stale reads, the worst staleness in ms, the scenario's own metric when it
# is another one, and whether a fixed variant kept its promised bound.

# %%
measured = {}
for name, s in CATALOGUE.items():
    runs = {v.name: v.run() for v in s.variants}
    measured[name] = {v.name: s.measure(runs[v.name]) for v in s.variants}
    own = [] if s.metric in ("stale_reads", "staleness_max") else [s.metric.replace("_", " ")]
    head = ["variant", "label", "stale reads", "worst staleness", *own, "promise"]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for v in s.variants:
        rep, value = runs[v.name].report, measured[name][v.name]
        cells = [f"`{v.name}`", v.label, str(rep.stale_reads), f"{rep.staleness_max * 1000:.0f} ms"]
        cells += [s.describe(value)] if own else []
        kept = s.kept(v, value)
        cells.append("broken" if kept is None else f"≤ {s.describe(v.bound)} " + ("✓" if kept else "✗"))
        rows.append("| " + " | ".join(cells) + " |")
    display(Markdown(f"### `{name}`: {s.title}\n\n{s.explanation}\n\n" + "\n".join(rows)))

# %% [markdown]
# ## Side by side
#
# Red bars are broken variants, green bars fixed ones. The units differ per scenario (a
# count of stale reads, a worst staleness in ms, a peak of database reads): each axis
# says which.

# %%
cols = 3
rows = -(-len(CATALOGUE) // cols)
fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), layout="constrained")
for ax, (name, s) in zip(axes.flat, CATALOGUE.items()):
    variant_bars(measured[name], broken=[v.name for v in s.variants if v.broken],
                 metric=s.metric, title=s.title, ax=ax)
for ax in list(axes.flat)[len(CATALOGUE):]:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## What the catalogue teaches
#
# - **Versions fix ordering.** Out-of-order, duplicated and concurrent writes all reduce to
#   "apply only if newer". cachelab puts the global sequence number in every message and
#   every entry. (Hazelcast's near cache also numbers its invalidations, per partition and
#   with a partition UUID, to notice the ones it missed.)
# - **Tickets fix the stale set; tombstones fix eviction.** Both remember something about a
#   key the cache *does not hold*: a read in flight, or a version that was evicted.
# - **Loss is only survivable if detected.** Reconnect handling and gap detection turn a
#   silent loss into a repair (or, with `repair=False`, a flush); the TTL bounds whatever
#   slips through.
# - **Some problems are not the cache's to fix.** A writer that bypasses the nodes, or a
#   session that reads from another node, needs tracking, routing or a TTL.
#
# ## Exercises
#
# 1. Set `SCENARIO = "tombstones"` and run the notebook again. In the broken pane, at which
#    event does `b` lose the information it needed?
# 2. In `two_writers`, why do both fixes work, although one pushes values and the other
#    does not?
# 3. Which scenarios does no safeguard of the node fix, and what bounds them instead?
#
# <details><summary>Worked answers</summary>
#
# 1. At the eviction of `k v2` (the grey *evicted* marker): with it goes the only trace
#    that a newer version exists, so the late fill of `v1` finds nothing to compare with.
#    A tombstone keeps that version as the minimum a fill must carry.
# 2. Both stop an older message from replacing a newer value: versions make the older
#    message *outdated*; invalidation never takes a value from a message and reloads from
#    Redis, which holds the newest.
# 3. `external_writer` and `partition`: the node never hears of the write in time, and a
#    TTL bounds the damage. `read_your_writes` on a peer needs routing (sticky sessions),
#    `db_ordering` a better order of the writer's steps. `negative_cache` is fixed by a
#    node option, not caching absences, which costs a store read per miss.
#
# </details>
#
# Next: [05 · failures](05-failures.ipynb), where loss, partitions and restarts are swept
# rather than scripted.
