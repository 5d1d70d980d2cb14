"""Benchmark and helper scripts (run as `python -m scripts.<name>`)."""
