"""Hyperparameter search: the search space in the config (space.py), Optuna studies whose
trials are training runs (study.py) and where they live (storage.py). Command line:
`python -m vidrec_jax.sweep`."""
