# %% [markdown]
# # 08 · Challenges: write the safeguards yourself
#
# Four challenges, in the spirit of Fly.io's Gossip Glomers: each switches one of
# cachelab's safeguards **off** and asks you to provide the same protection in a few
# lines of code. Your code runs inside real CacheNodes on the simulator, against
# scripted scenarios like those of notebook 04, and the consistency checker of notebook
# 07 grades it: **PASS** or **FAIL**, with, when it fails, the shortest trace the grader
# could find that still fails, animated in the trace viewer under the verdict.
#
# Every challenge also checks what your safeguard **costs**: its `cost` check counts the
# Redis reads on a run over ten keys, and allows at most 1.5 times those of the library's
# answer. Flushing the whole cache on every message is always safe, and fails there, with
# a line that says why. If your `apply` raises, the grade says so in one line, with the
# message it was handling.
#
# Your answer is always one function, `apply(store, msg, memo)`: what a node does with a
# peer's message.
#
# - `store` is the node's local cache: `store.invalidate(key, version)` drops a key and
#   remembers the version (a *tombstone*: fills older than it are refused);
#   `store.update(key, value, version)` replaces a held value; `store.flush()` drops
#   everything; `store.known_version(key)` is the newest version the store knows of.
# - `msg` is the message: `msg.op` (`"set"`, `"del"`, `"inv"`), `msg.key`, `msg.seq`
#   (the write's version: a global sequence number, one per write), `msg.value`.
# - `memo` is a dict private to this node for the run: keep your own state there.
#
# Return `True` when the message changed something, `False` when you ignored it.
#
# Each challenge below shows a **wrong answer first**, graded, with its counterexample.
# Then it is your turn: edit the function in the next cell and run it. The worked answers
# are hidden under each challenge; the library's own safeguards are the reference, and
# the test suite checks that each of them passes and that each one switched off fails.

# %% tags=["parameters"]
SHRINK = True  # shrink a failing run to a short counterexample (a few hundred runs at most)

# %%
from cachelab.lab.challenges import CHALLENGES

for challenge in CHALLENGES.values():
    print(f"{challenge.title}: {len(challenge.checks)} checks ({challenge.name})")

# %% [markdown]
# ## 1 · Tell the peers

# %%
tell = CHALLENGES["tell_the_peers"]
print(tell.brief)


def apply(store, msg, memo):
    """A wrong answer: ignore every message."""
    return False


tell.grade(apply, shrink=SHRINK)

# %% [markdown]
# The table says which checks fail. The counterexample under it: `a` writes, the message
# reaches the others, they ignore it (`set:ignored`) and keep serving the old version
# (step to the red *STALE READ*).
#
# Your turn: make the peers drop the key. Then run the cell; if it fails, its
# counterexample appears under the table.

# %%
def apply(store, msg, memo):
    """Your answer."""
    return False  # replace this line


tell.grade(apply, shrink=SHRINK)

# %% [markdown]
# <details><summary>Worked answer</summary>
#
# ```python
# def apply(store, msg, memo):
#     store.discard(msg.key)  # drop the key the message is about, nothing else
#     return True
# ```
#
# The next read of the key misses and fetches the new version from Redis. Dropping more
# (`store.flush()`) is just as fresh and fails the `cost` check.
#
# </details>
#
# ## 2 · The stale set

# %%
stale_set = CHALLENGES["remember_the_absent"]
print(stale_set.brief)


def apply(store, msg, memo):
    """A plausible wrong answer: drop the key if we hold it."""
    return store.data.pop(msg.key, None) is not None


stale_set.grade(apply, shrink=SHRINK)

# %% [markdown]
# In the counterexample `b`'s read is in flight when the message arrives; `b` holds
# nothing, so the answer above forgets the message entirely, and the late reply is
# cached. Challenge 1's answer, dropping the key, fails here the same way: there is
# nothing to drop. This one needs a new idea: remember a change to a key you do not hold.
# Your turn:

# %%
def apply(store, msg, memo):
    """Your answer."""
    return store.data.pop(msg.key, None) is not None  # replace this line


stale_set.grade(apply, shrink=SHRINK)

# %% [markdown]
# <details><summary>Worked answer</summary>
#
# ```python
# def apply(store, msg, memo):
#     return store.invalidate(msg.key, msg.seq)  # drop it, and remember the version
# ```
#
# `invalidate` drops the key if held and, held or not, raises its tombstone to the new
# version; the late fill, older, is refused. It returns `False` for a message no newer
# than what the store knows. The library does the same in two places: tombstones in the
# local store, and the fill guard, a ticket each read takes before it leaves, marked by
# every message about its key.
#
# </details>
#
# ## 3 · Newer news only

# %%
newer_only = CHALLENGES["newer_only"]
print(newer_only.brief)


def apply(store, msg, memo):
    """A wrong answer: take every value the messages bring."""
    return store.update(msg.key, msg.value, msg.seq)


newer_only.grade(apply, shrink=SHRINK)

# %%
def apply(store, msg, memo):
    """Your answer."""
    return store.update(msg.key, msg.value, msg.seq)  # replace this line


newer_only.grade(apply, shrink=SHRINK)

# %% [markdown]
# <details><summary>Worked answer</summary>
#
# ```python
# def apply(store, msg, memo):
#     if msg.seq <= store.known_version(msg.key):
#         return False  # older or repeated news
#     return store.update(msg.key, msg.value, msg.seq)
# ```
#
# Versions that only go up: the library's `ordering=True`.
#
# </details>
#
# ## 4 · Surviving loss

# %%
survive = CHALLENGES["survive_loss"]
print(survive.brief)


def apply(store, msg, memo):
    """A wrong answer: invalidate, and hope no message is lost."""
    return store.invalidate(msg.key, msg.seq)


survive.grade(apply, shrink=SHRINK)

# %%
def apply(store, msg, memo):
    """Your answer."""
    return store.invalidate(msg.key, msg.seq)  # replace this line


survive.grade(apply, shrink=SHRINK)

# %% [markdown]
# <details><summary>Worked answer</summary>
#
# ```python
# def apply(store, msg, memo):
#     last = memo.get("last", 0)
#     if last and msg.seq > last + 1:
#         store.flush()  # a number was skipped: some message never arrived
#     memo["last"] = max(last, msg.seq)
#     return store.invalidate(msg.key, msg.seq)
# ```
#
# The library's gap detection does this in the node, and does more: before it acts on a
# skipped number it asks Redis whether that number was ever issued (a forged one is then
# dropped), and it repairs instead of flushing, keeping what did not change. A silent cut
# is only noticed at the next message (on a real server, at the next heartbeat); a TTL
# bounds the rest.
#
# </details>
#
# ## The grades at a glance
#
# The library's own safeguards, graded like your answers, and the answer that flushes
# everything on every message, safe and useless:

# %%
from cachelab.lab.challenges import flush_everything

for challenge in CHALLENGES.values():
    print(challenge.grade(challenge.reference, shrink=False))
    print(challenge.grade(flush_everything, shrink=False))

# %% [markdown]
# Next: [09 · keys that anyone writes](09-keys-anyone-writes.ipynb): tracking, streams,
# and a cache that measures its own staleness. Back to the start:
# [00 · quickstart](00-quickstart.ipynb). For teachers:
# `docs/teaching.md` has the learning goals, a 90-minute session plan and the grading.
