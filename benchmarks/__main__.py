"""``make bench``: every benchmark, each a ratio to a baseline timed in the same run."""

from __future__ import annotations

from benchmarks import core_costs, repair, sim_throughput, versions


def main() -> None:
    """Core costs, v1 against v2, flush against repair, then the simulator's throughput."""
    core_costs.main()
    versions.main()
    repair.main()
    sim_throughput.main()


if __name__ == "__main__":
    main()
