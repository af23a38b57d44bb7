"""Benchmarks: figures measured on loopback, reported, never asserted (not collected by pytest)."""
