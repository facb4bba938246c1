"""Peer nodes in another process, as in a deployment: ``python -m benchmarks.peers PORT NS N``.

They subscribe, print ``ready``, and run until their standard input closes.
"""

from __future__ import annotations

import sys

import redis

from cachelab import CacheNode


def main() -> None:
    """Start N peers on the namespace, then wait for EOF on stdin."""
    port, namespace, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    client = redis.Redis(port=port)
    nodes = [CacheNode(client, name=f"peer{i}", namespace=namespace) for i in range(count)]
    print("ready", flush=True)
    sys.stdin.read()
    for node in nodes:
        node.close()


if __name__ == "__main__":
    main()
