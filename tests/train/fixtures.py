"""A fake batch and smoke-config Setup for step and checkpoint tests."""

import jax
import numpy as np

from tests import helpers
from vidrec_jax.train.random_batch import random_batch
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train.state import Setup

NUM_USERS, NUM_VIDEOS = 11, 13  # odd sizes: shape bugs show


def fake_batch(config, seed: int = 0, batch_size: int | None = None) -> dict:
  """A batch with every input the config's model declares (its clip inputs, impressions)."""
  return random_batch(config, NUM_USERS, NUM_VIDEOS, seed, batch_size)


def setup_on(devices, shape, config=None) -> Setup:
  config = config or helpers.load_config()
  with config.unlocked():
    config.mesh.shape = dict(zip(mesh_lib.AXES, shape))
  return Setup(config, NUM_USERS, NUM_VIDEOS, mesh_lib.make_mesh(config.mesh, devices))


def put(tree, shardings):
  """Host copy -> arrays laid out by `shardings` (from numpy, so donation is safe)."""
  return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), jax.device_get(tree),
                      shardings)
