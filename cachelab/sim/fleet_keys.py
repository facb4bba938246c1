"""The fleet model's keys: how popular each one is, and which shard its messages go through.

Keys are ``k0`` .. ``k{n-1}``, key ``i`` read and written with probability proportional to
``1 / (i + 1) ** skew`` (Zipf). A striped namespace hashes each key to one of ``stripes``
stripes; each stripe is a hash tag, so it lives on one shard of a Redis Cluster, and its
messages go through that shard alone (sharded pub/sub). ``placement`` says how stripes
land on shards: ``"slots"`` as Redis Cluster places them (CRC16 of the tag modulo 16384,
the slots split in equal ranges over the shards; a few stripes may land unevenly), or
``"round_robin"`` (stripe ``s`` on shard ``s mod shards``: as even as it gets).
"""

from __future__ import annotations

import random
from bisect import bisect
from itertools import accumulate

from redis.crc import key_slot

from cachelab.stripes import stripe_of

PLACEMENTS = ("slots", "round_robin")
SLOTS = 16384


class Popularity:
    """Zipf probabilities over ``keys`` keys, and a picker that follows them."""

    def __init__(self, keys: int, skew: float) -> None:
        weights = [1.0 / (i + 1) ** skew for i in range(keys)]
        total = sum(weights)
        self.share = [w / total for w in weights]
        self._cumulative = list(accumulate(self.share))
        self._last = keys - 1

    def pick(self, rng: random.Random) -> int:
        """The index of a key drawn by popularity."""
        return min(bisect(self._cumulative, rng.random()), self._last)


def stripe_slot(stripe: int, namespace: str = "cachelab") -> int:
    """The hash slot of one stripe's tag, ``{ns#s}`` (redis-py's CRC16, as Redis Cluster's)."""
    return int(key_slot(("{" + f"{namespace}#{stripe}" + "}").encode()))


def shard_of_stripe(stripe: int, shards: int, placement: str, namespace: str = "cachelab") -> int:
    """The shard that serves stripe ``stripe``."""
    if placement == "round_robin":
        return stripe % shards
    return stripe_slot(stripe, namespace) * shards // SLOTS


def shard_of_keys(keys: int, stripes: int, shards: int, placement: str) -> list[int]:
    """For each key, the shard its writes and messages go to."""
    home = [shard_of_stripe(s, shards, placement) for s in range(stripes)]
    return [home[stripe_of(f"k{k}", stripes)] for k in range(keys)]


def shard_shares(popularity: Popularity, shard_of: list[int], shards: int) -> list[float]:
    """The share of all writes that lands on each shard."""
    shares = [0.0] * shards
    for key, share in enumerate(popularity.share):
        shares[shard_of[key]] += share
    return shares
