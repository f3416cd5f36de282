"""The benchmark suite: each case measured next to its floor, as ratios (`python -m benchmarks`)."""
