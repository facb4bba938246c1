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
# First one race in slow motion, then the whole catalogue side by side.

# %% tags=["parameters"]
SCENARIO = "stale_set"  # the one animated in slow motion
FRAMES = 40

# %%
import matplotlib.pyplot as plt
from IPython.display import HTML, Markdown, display

from cachelab.sim.scenarios import CATALOGUE
from cachelab.viz import animate, variant_bars

# %% [markdown]
# ## The stale set, in slow motion
#
# The race that Facebook's memcache paper calls a *stale set* and that every cache-aside
# tutorial gets wrong. Watch `b`: its read of `k` leaves at 100 ms and comes back (orange)
# at 150 ms with version 1. The write of version 2 happened at 110 ms, and its invalidation
# reached `b` at 111 ms, when `b` had nothing to drop. Without a guard, `b` caches the late
# reply and serves it for good.

# %%
scenario = CATALOGUE[SCENARIO]
display(Markdown(f"**{scenario.title}.** {scenario.explanation}"))
broken, fixed = scenario.broken.run(), scenario.fixed.run()
anim = animate(broken.trace, nodes=broken.nodes, max_frames=FRAMES, interval=350)
HTML(anim.to_jshtml())

# %% [markdown]
# The same script with the fill guard on: the read took a ticket when it left, the
# invalidation marked the ticket, and the late fill is refused (`fill rejected`). The next
# read misses and fetches version 2.

# %%
anim = animate(fixed.trace, nodes=fixed.nodes, max_frames=FRAMES, interval=350)
HTML(anim.to_jshtml())

# %% [markdown]
# ## The whole catalogue
#
# For each scenario: its explanation, every variant with the scenario's metric, the stale
# reads and the worst staleness, and whether a fixed variant kept its promised bound.

# %%
measured = {}
for name, s in CATALOGUE.items():
    runs = {v.name: v.run() for v in s.variants}
    measured[name] = {v.name: s.measure(runs[v.name]) for v in s.variants}
    extras = [m for m in ("stale_reads", "staleness_max") if m != s.metric]
    head = ["variant", "label", s.metric, *extras, "promise"]
    rows = ["| " + " | ".join(h.replace("_", " ") for h in head) + " |", "|---" * len(head) + "|"]
    for v in s.variants:
        rep, value = runs[v.name].report, measured[name][v.name]
        cells = [f"`{v.name}`", v.label, f"{value:.3g}"]
        cells += [str(rep.stale_reads) if m == "stale_reads" else f"{rep.staleness_max * 1000:.0f} ms"
                  for m in extras]
        if v.broken:
            cells.append("broken")
        else:
            cells.append(f"≤ {v.bound:g} " + ("✓" if value <= v.bound + 1e-9 else "✗"))
        rows.append("| " + " | ".join(cells) + " |")
    display(Markdown(f"### {s.title}\n\n{s.explanation}\n\n" + "\n".join(rows)))

# %% [markdown]
# ## Side by side
#
# Red bars are broken variants, green bars fixed ones. The units differ per scenario (a
# count of stale reads, a worst staleness in seconds, a peak of database loads): read the
# axis label.

# %%
cols = 3
rows = -(-len(CATALOGUE) // cols)
fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.3 * rows), layout="constrained")
for ax, (name, s) in zip(axes.flat, CATALOGUE.items()):
    variant_bars(measured[name], broken=[v.name for v in s.variants if v.broken],
                 metric=s.metric, title=s.title if len(s.title) < 48 else s.title[:45] + "…", ax=ax)
for ax in list(axes.flat)[len(CATALOGUE):]:
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## What the catalogue teaches
#
# - **Versions fix ordering.** Out-of-order, duplicated and concurrent writes all reduce to
#   "apply only if newer". None of the JVM near caches carries a version; cachelab puts the
#   global sequence number in every message and every entry.
# - **Tickets fix the stale set; tombstones fix eviction.** Both remember something about a
#   key the cache *does not hold*: a read in flight, or a version that was evicted.
# - **Loss is only survivable if detected.** Reconnect flushes and gap detection turn a
#   silent loss into a cache flush; the TTL bounds whatever slips through.
# - **Some problems are not the cache's to fix.** A writer that bypasses the nodes, or a
#   session that reads from another node, needs tracking, routing or a TTL.
#
# Next: [05 · failures](05-failures.ipynb), where loss, partitions and restarts are swept
# rather than scripted.
