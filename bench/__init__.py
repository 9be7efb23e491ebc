"""Benchmarks of the WorkDev event pipeline (run the modules as scripts; see bench/README.md)."""
