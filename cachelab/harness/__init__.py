"""The harness: private servers and clusters, node processes, the runner, load, faults, the demo
and the command line. The near cache never imports it; tests, benchmarks and the lab do."""
