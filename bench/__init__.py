"""Benchmarks: each prints its measurements side by side and one JSON object as its last line."""
