"""Benchmarks; run as modules (`python -m bench.<name>`) so `bench/` never shadows a stdlib module."""
