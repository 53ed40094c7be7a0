"""Helpers for tests, benchmarks and the demo: tiny random models built offline. Not used by the libraries."""
