"""The registry of whole models (`model.name`). Each model class provides
`from_config(model_cfg, num_users, num_videos, rngs)` (the one place that reads its config
section) and `input_spec(model_cfg)` (what the input pipeline must deliver)."""

from vidrec_jax.registry import Registry

MODELS = Registry("model", package="vidrec_jax.models")
