"""Training entry points (python -m trainers.X)."""
