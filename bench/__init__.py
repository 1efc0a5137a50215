"""Benchmarks: `make bench` prints figures and writes them to bench/results.json."""
