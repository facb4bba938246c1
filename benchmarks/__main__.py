"""``make bench``: every benchmark, each a ratio to a baseline timed in the same run."""

from __future__ import annotations

from benchmarks import async_costs, core_costs, repair, sim_throughput, strategies, versions


def main() -> None:
    """Core costs, the async node's hit, v1 against v2, flush against repair, the
    strategies side by side, then the simulator's throughput."""
    core_costs.main()
    async_costs.main()
    versions.main()
    repair.main()
    strategies.main([])
    sim_throughput.main()


if __name__ == "__main__":
    main()
