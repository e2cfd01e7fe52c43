"""Benchmarks (a package, so bench/analytics.py does not clash with the analytics package)."""
