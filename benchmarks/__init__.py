"""Benchmarks for jmeta (not part of the installed package)."""
