"""A random batch with every input a configured model declares (its clip inputs, impressions),
in the shapes and value ranges the input pipeline produces: for step tests and speed benchmarks
that need no generated world. Each clip input's random value is its clip op's (data/ops.py
`ClipOp.random`), so an op registered outside the library gets one too."""

from __future__ import annotations

import numpy as np

from vidrec_jax.data import ops
from vidrec_jax.models.backbones import part as backbone_part
from vidrec_jax.models import recommender
from vidrec_jax.models.item_features import ITEM_FEATURES


def random_batch(config, num_users: int, num_videos: int, seed: int = 0,
                 batch_size: int | None = None) -> dict[str, np.ndarray]:
  """One training batch for `config` (the whole config), with a few awkward rows: clip 1 is
  invalid (undecodable), clip 2 has a single real impression, and clips have 2..T real frames.

  Args:
    config: the run's config.
    num_users: user vocabulary size (ids up to it: the last is the OOV row).
    num_videos: video vocabulary size (likewise).
    seed: seeds every value.
    batch_size: clips in the batch (default data.batch_size).
  """
  d = config.data
  spec = recommender.input_spec(config.model)
  rng = np.random.default_rng(seed)
  b = batch_size or d.batch_size
  mask = (np.arange(d.num_frames)[None] < rng.integers(2, d.num_frames + 1, (b, 1))).astype(
      np.float32)
  m = d.impressions_per_clip
  valid = np.ones(b, np.int32)
  valid[1] = 0
  weight = np.ones((b, m), np.float32)
  weight[2, 1:] = 0  # a clip whose video had fewer impressions than M
  out = {"mask": mask, "valid": valid, "weight": weight,
         "user": rng.integers(0, num_users + 1, (b, m)).astype(np.int32),
         "video": rng.integers(0, num_videos + 1, b).astype(np.int32),
         "position": rng.integers(0, 5, (b, m)).astype(np.int32),
         "click": (rng.random((b, m)) < 0.4).astype(np.float32),
         "watch_time": rng.random((b, m)).astype(np.float32) * 3,
         "like": (rng.random((b, m)) < 0.2).astype(np.float32)}
  if spec.content_type:
    out["content_type"] = rng.integers(0, len(config.model.content_types) + 1, b).astype(np.int32)
  if spec.duration:
    out["duration"] = rng.uniform(1.0, 6.0, b).astype(np.float32)
  if spec.log_q:
    out["log_q"] = np.log(rng.uniform(0.001, 0.01, b)).astype(np.float32)
  readers = {key: ops.CLIP_OPS.get(key) for key in spec.clip if key != "mask"}
  dim = (backbone_part.model_dim(backbone_part.BackboneArgs.from_config(config.model))
         if any(op.source == ops.FEATURES for op in readers.values()) else 0)
  for key, op in readers.items():
    values = op.random(rng, b, d.num_frames, d.frame_size, dim)
    out[key] = values.astype(np.float32) * mask.reshape(mask.shape + (1,) * (values.ndim - 2))
  for name in spec.item_features:
    out[name] = ITEM_FEATURES.get(name).fake(rng, b)
  return out
