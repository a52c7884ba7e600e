"""A fake batch and smoke-config Setup for step and checkpoint tests."""

import functools

import jax
import numpy as np

from tests import helpers
from vidrec_jax import run_spec
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train.random_batch import random_batch
from vidrec_jax.train.state import Setup

NUM_USERS, NUM_VIDEOS = 11, 13  # odd sizes: shape bugs show


def fake_batch(config, seed: int = 0, batch_size: int | None = None) -> dict:
  """A batch with every input the config's model declares (its clip inputs, impressions)."""
  return random_batch(config, NUM_USERS, NUM_VIDEOS, seed, batch_size)


def setup_on(devices, shape, config=None) -> Setup:
  config = config or helpers.load_config()
  with config.unlocked():
    config.mesh.shape = dict(zip(mesh_lib.AXES, shape))
  return Setup(run_spec.resolve(config), NUM_USERS, NUM_VIDEOS,
               mesh_lib.make_mesh(config.mesh, devices))


def train_on_eight_devices(config, seeds) -> tuple[dict, dict, dict]:
  """Params before and after one jitted train step per seed's fake batch, with parameters and
  batch sharded over 8 devices (mesh 4 x 2 x 1), and the last step's metrics."""
  from vidrec_jax.models.partitioning import activation_sharding  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train import steps  # pylint: disable=g-import-not-at-top
  setup = setup_on(jax.devices()[:8], (4, 2, 1), config)
  state = setup.init(0)
  step = jax.jit(functools.partial(steps.train_step, setup),
                 in_shardings=(setup.state_shardings, None),
                 out_shardings=(setup.state_shardings, None))
  before = jax.device_get(state.params)
  metrics = {}
  for seed in seeds:
    with activation_sharding(setup.mesh, setup.rules):
      state, metrics = step(state, mesh_lib.shard_batch(fake_batch(config, seed=seed),
                                                        setup.mesh, setup.rules))
  return before, jax.device_get(state.params), metrics


def put(tree, shardings):
  """Host copy -> arrays laid out by `shardings` (from numpy, so donation is safe)."""
  return jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), jax.device_get(tree),
                      shardings)
