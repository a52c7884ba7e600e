"""Hyperparameter search: the search space in the config (space.py) and Optuna studies whose
trials are training runs (study.py). Command line: `python -m vidrec_jax.sweep`."""
