"""The synthetic world's arguments (`WorldConfig`): the `synthetic` dataset's config section
without its `name`, typed; data/world.py generates a world from them."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from vidrec_jax.run_spec import Section
from vidrec_jax.run_spec import thaw
from vidrec_jax.run_spec import typed


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """The world's arguments: the `synthetic` dataset's section (configs/base.py `world_config`)
  without its `name`."""

  seed: int
  num_users: int
  num_videos: int
  num_topics: int
  num_palettes: int
  topic_purity: float
  cold_fraction: float
  format_weights: Section  # format -> sampling weight (FORMATS)
  min_frames: int
  max_frames: int
  resolution: int
  fps: int
  noise: float
  num_personas: int
  individual_taste_std: float
  appearance_weight: float
  motion_weight: float
  order_weight: float  # > 0: clips change colour halfway; users care which colour is first
  user_bias_std: float
  video_bias_std: float
  base_logit: float
  horizon_seconds: float
  train_until: float
  valid_until: float
  slates_per_user: int
  slate_size: int
  cold_share_after_publish: float
  position_bias_power: float
  label_noise: float
  # > 0: slates are drawn by a segment-level logging policy, each slot with probability
  # proportional to exp(exposure_taste * the user's persona's affinity for the video), as a feed
  # that targets taste segments shows them; 0: uniformly from the catalog (the worlds before it).
  exposure_taste: float
  # Where --mode=generate writes the world: 'tfds' (the run's dataset: videos and TFDS records)
  # or 'microlens' (a MicroLens release folder, data/microlens_layout.py). Not part of the world.
  layout: str

  @classmethod
  def from_args(cls, args: Mapping[str, Any]) -> "WorldConfig":
    """From the dataset section (its `name` dropped); a ConfigError names missing or unknown
    fields."""
    return typed(cls, {k: v for k, v in dict(args).items() if k != "name"}, "data.dataset")

  def to_dict(self) -> dict:
    return thaw(self)

  def settings(self) -> dict:
    """What makes the world: every field but the layout it is written in (a built world's
    stamp, data/build.py)."""
    out = self.to_dict()
    out.pop("layout")
    if out["exposure_taste"] == 0.0:  # off: the stamp of the worlds built before it existed
      out.pop("exposure_taste")
    return out
