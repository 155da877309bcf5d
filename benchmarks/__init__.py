"""Benchmarks of spine_dagster against plain Dagster. Run ``python benchmarks/run.py --help``."""
