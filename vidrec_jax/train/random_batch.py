"""A random batch with every input a configured model declares (its clip inputs, impressions),
in the shapes and value ranges the input pipeline produces: for step tests and speed benchmarks
that need no generated world."""

from __future__ import annotations

import numpy as np

from vidrec_jax.models import backbone_encoder
from vidrec_jax.models import recommender


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
  frame = (b, d.num_frames, d.frame_size, d.frame_size)
  for key in spec.clip:
    if key in ("frames", "motion"):
      values = rng.normal(size=frame + (3,))
    elif key == "frame_pairs":  # raw pixels of each frame and the next
      values = rng.integers(0, 256, frame + (6,))
    elif key in ("flow", "cached_flow"):  # flow fields, in pixels
      values = rng.normal(size=frame + (2,))
    elif key in ("features", "next_features"):
      args = backbone_encoder.BackboneArgs.from_config(config.model)
      values = rng.normal(size=(b, d.num_frames, backbone_encoder.model_dim(args)))
    elif key == "mask":
      continue
    else:
      raise ValueError(f"random_batch: no fake value for the clip input {key!r}; give it one "
                       "here (the inputs it knows: frames, motion, frame_pairs, flow, "
                       "cached_flow, features, next_features)")
    out[key] = values.astype(np.float32) * mask.reshape(mask.shape + (1,) * (values.ndim - 2))
  return out
