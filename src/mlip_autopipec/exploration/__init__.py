"""Exploration: generate candidate structures with the current potential (MD walkers, sampling rules)."""
