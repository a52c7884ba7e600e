"""Experiment configs: `get_config(arg) -> ml_collections.ConfigDict` per file, passed to
`python -m vidrec_jax.main --config=configs/FILE.py[:ARG]`.

The folder is installed as the package `configs` (pyproject.toml), so a config file builds on
another with `from configs import base` (the fields every config starts from), without sys.path
edits. The library never imports it.
"""
