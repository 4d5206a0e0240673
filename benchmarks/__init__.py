"""Benchmarks (make bench, bench-gpu, bench-fanout): tooling, not shipped in the product packages."""
