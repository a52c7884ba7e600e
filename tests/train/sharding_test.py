"""The sharded train step on a (4, 2) mesh of 8 fake CPU devices equals the single-device step."""

import functools

import jax
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.train import fixtures
from vidrec_jax.models import partitioning
from vidrec_jax.models.partitioning import activation_sharding
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps


def run_steps(setup, state, batches):
  step = jax.jit(functools.partial(steps.train_step, setup),
                 in_shardings=(setup.state_shardings, None),
                 out_shardings=(setup.state_shardings, None), donate_argnums=(0,))
  metrics = []
  for b in batches:
    with activation_sharding(setup.mesh, setup.rules):
      state, m = step(state, mesh_lib.shard_batch(b, setup.mesh, setup.rules))
    metrics.append(jax.device_get(m))
  return jax.device_get(state), metrics


class ShardingTest(absltest.TestCase):

  def test_eight_devices_match_one(self):
    self.assertGreaterEqual(jax.device_count(), 8)
    config = helpers.load_config()
    single = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), config)
    sharded = fixtures.setup_on(jax.devices()[:8], (4, 2, 1), config)
    state0 = jax.device_get(single.init(0))
    batches = [fixtures.fake_batch(config, seed=s) for s in range(3)]
    s1, m1 = run_steps(single, fixtures.put(state0, single.state_shardings), batches)
    s8, m8 = run_steps(sharded, fixtures.put(state0, sharded.state_shardings), batches)
    for a, b in zip(m1, m8):
      for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=2e-5, atol=2e-6, err_msg=k)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6),
                 s1.params, s8.params)

  def test_fsdp_and_vocab_sharding_split_the_tables(self):
    config = fixtures.helpers.load_config()
    config.model.embed_dim = 8
    setup = fixtures.setup_on(jax.devices()[:8], (2, 2, 2), config)
    def at(tree, path):
      for k in path:
        tree = tree[k]
      return tree

    for path in (("user_tower", "user_embed", "embedding"), ("video_embed", "embedding")):
      sh = at(setup.param_shardings, path)
      table = at(setup.abstract_state.params, path)  # (128, 8): padded rows
      self.assertEqual(tuple(sh.spec), ("model", "fsdp"))
      self.assertEqual(sh.shard_shape(table.shape), (table.shape[0] // 2, table.shape[1] // 2))
      self.assertEqual(mesh_lib.shard_bytes(table, sh), table.size * table.dtype.itemsize // 4)
      # Adam's moments follow their parameter.
      mu = at(setup.state_shardings.opt_state[1][0].mu, path)
      self.assertEqual(tuple(mu.spec), ("model", "fsdp"))
    # A dimension the mesh axis does not divide stays replicated instead of failing.
    spec = partitioning.logical_to_spec(("vocab", "embed"), setup.rules, (13, 8), setup.mesh)
    self.assertEqual(tuple(spec), (None, "fsdp"))


if __name__ == "__main__":
  absltest.main()
