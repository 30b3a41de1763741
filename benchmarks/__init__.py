"""Benchmarks: scripts that measure the protocol and write docs/benchmarks.md."""
