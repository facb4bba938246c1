"""``make bench``: every benchmark, each a ratio to a baseline timed in the same run."""

from __future__ import annotations

from benchmarks import core_costs


def main() -> None:
    """Run the core costs, then the simulator's throughput."""
    core_costs.main()
    from benchmarks import sim_throughput  # written alongside the simulator

    sim_throughput.main()


if __name__ == "__main__":
    main()
