"""Simulator throughput: simulated operations per second, against a plain dict loop.

Goal (issue 3): at least 100,000 simulated operations per second with 16 nodes and
the ``invalidate`` strategy. The workload is the default one of ``Simulation.run``:
YCSB workload B (Zipf 0.99 over 1000 keys, 95 % reads) at 10,000 requests per
virtual second, on a network of 2 ms + up to 1 ms jitter. The baseline, measured
in the same run on the same requests, is a plain ``dict`` get/set loop per node.
Each figure is the best of ``--repeat`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from cachelab.sim import Network, Simulation
from cachelab.sim.workloads import Request, zipf

NODES = 16
GOAL = 100_000.0


def dict_loop(requests: list[Request]) -> float:
    """Seconds for plain dicts (one per node) to serve the same reads and writes."""
    caches: list[dict[str, int]] = [{} for _ in range(NODES)]
    start = time.perf_counter()
    for n, req in enumerate(requests):
        cache = caches[req.node]
        if req.op != "read" or cache.get(req.key) is None:
            cache[req.key] = n
    return time.perf_counter() - start


def simulate(requests: list[Request] | int, seed: int, read_report: bool) -> float:
    """Seconds to run the requests (or generate and run that many), checking if asked."""
    sim = Simulation(
        nodes=NODES, strategy="invalidate", seed=seed, network=Network(delay=0.002, jitter=0.001)
    )
    start = time.perf_counter()
    if isinstance(requests, int):
        result = sim.run(ops=requests, progress=False)
    else:
        result = sim.run(workload=requests, progress=False)
    if read_report:
        _ = result.report, result.trace
    return time.perf_counter() - start


def best(repeat: int, measure: Callable[[], float]) -> float:
    """The shortest of ``repeat`` measurements."""
    return min(measure() for _ in range(repeat))


def main(argv: list[str] | None = None) -> None:
    """Print simulated ops/s (without and with the checker), the dict baseline, the ratio."""
    parser = argparse.ArgumentParser(description="simulator throughput vs a plain dict")
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    requests = list(zipf(args.ops, NODES, seed=args.seed))
    run_s = best(args.repeat, lambda: simulate(requests, args.seed, False))
    full_s = best(args.repeat, lambda: simulate(requests, args.seed, True))
    generated_s = best(args.repeat, lambda: simulate(args.ops, args.seed, False))
    dict_s = best(args.repeat, lambda: dict_loop(requests))
    rate, full, base = args.ops / run_s, args.ops / full_s, args.ops / dict_s
    print(f"simulator, {NODES} nodes, invalidate, {args.ops:,} ops (best of {args.repeat}):")
    print(f"  run (history + trace)          {rate:12,.0f} ops/s")
    print(f"  run + checker report + marking {full:12,.0f} ops/s")
    print(f"  run(ops=N), generating them    {args.ops / generated_s:12,.0f} ops/s")
    print(f"plain dict get/set loop          {base:12,.0f} ops/s")
    print(f"dict / simulator: {base / rate:.0f}x (run), {base / full:.0f}x (with report)")
    print(f"goal {GOAL:,.0f} ops/s: {'met' if rate >= GOAL else 'MISSED'} by the run")


if __name__ == "__main__":
    main()
