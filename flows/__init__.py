"""Prefect flows, each runnable as `python -m flows.<name>`; they compose tasks, nothing else."""
