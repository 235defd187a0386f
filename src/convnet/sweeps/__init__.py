"""Hyperparameter sweeps: what each run records, checks before a sweep, its summary."""
