"""The model the config names (`model.name`): `build` assembles it from the registered parts and
`input_spec` says what the input pipeline must deliver for it, `record_terms` how its config is
recorded. Models register themselves in
`MODELS` (models/model_registry.py) from files of their own: `two_tower` (models/two_tower.py,
the multi-task recommender) and `sequential` (models/sequential.py, a next-item model).
"""

from __future__ import annotations

from flax import nnx

from vidrec_jax.config_io import PartTerms
from vidrec_jax.data.inputs import InputSpec
from vidrec_jax.models.model_registry import MODELS
from vidrec_jax.models.user_towers import reads_history

__all__ = ["MODELS", "build", "input_spec", "reads_history", "record_terms"]


def build(cfg, num_users: int, num_videos: int, rngs: nnx.Rngs):
  """The model `cfg.name` of the `model` config section, from the registry."""
  return MODELS.get(cfg.name).from_config(cfg, num_users, num_videos, rngs)


def input_spec(cfg) -> InputSpec:
  """What the input pipeline must deliver for the model of the `model` config section."""
  return MODELS.get(cfg.name).input_spec(cfg)


def record_terms(config) -> PartTerms:
  """How the run's config is recorded (vidrec_jax/config_io.py): the configured model's
  `record_terms` (its parts' signature defaults and inert fields), or none."""
  hook = getattr(MODELS.get(config.model.name), "record_terms", None)
  return hook(config) if hook is not None else PartTerms()
