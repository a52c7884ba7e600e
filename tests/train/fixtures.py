"""A fake batch and smoke-config Setup for step and checkpoint tests."""

import jax
import numpy as np

from tests import helpers
from vidrec_jax.models import backbone_encoder
from vidrec_jax.models import recommender
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train.state import Setup

NUM_USERS, NUM_VIDEOS = 11, 13  # odd sizes: shape bugs show


def fake_batch(config, seed: int = 0, batch_size: int | None = None) -> dict:
  """A batch with every input the config's model declares (its clip inputs, impressions)."""
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
         "user": rng.integers(0, NUM_USERS + 1, (b, m)).astype(np.int32),
         "video": rng.integers(0, NUM_VIDEOS + 1, b).astype(np.int32),
         "position": rng.integers(0, 5, (b, m)).astype(np.int32),
         "click": (rng.random((b, m)) < 0.4).astype(np.float32),
         "watch_time": rng.random((b, m)).astype(np.float32) * 3,
         "like": (rng.random((b, m)) < 0.2).astype(np.float32)}
  for key in spec.clip:
    if key in ("frames", "motion"):
      shape = (b, d.num_frames, d.frame_size, d.frame_size, 3)
    elif key in ("features", "next_features"):
      args = backbone_encoder.BackboneArgs.from_config(config.model)
      shape = (b, d.num_frames, backbone_encoder.feature_dim(args))
    else:
      continue
    out[key] = (rng.normal(size=shape).astype(np.float32)
                * mask.reshape(mask.shape + (1,) * (len(shape) - 2)))
  return out


def setup_on(devices, shape, config=None) -> Setup:
  config = config or helpers.load_config()
  with config.unlocked():
    config.mesh.shape = dict(zip(mesh_lib.AXES, shape))
  return Setup(config, NUM_USERS, NUM_VIDEOS, mesh_lib.make_mesh(config.mesh, devices))


def put(tree, shardings):
  """Host copy -> arrays laid out by `shardings` (from numpy, so donation is safe)."""
  return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), jax.device_get(tree),
                      shardings)
