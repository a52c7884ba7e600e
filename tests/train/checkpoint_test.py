"""Orbax round trip: restoring then training continues exactly as without the interruption,
also onto another mesh."""

import tempfile

import jax
import numpy as np
from absl.testing import absltest

from tests.train import fixtures
from tests.train.sharding_test import run_steps
from vidrec_jax.train import checkpointing


class CheckpointTest(absltest.TestCase):

  def test_restore_then_continue_identically(self):
    setup = fixtures.setup_on(jax.devices()[:8], (4, 2, 1))
    batches = [fixtures.fake_batch(setup.config, seed=s) for s in range(4)]
    state, _ = run_steps(setup, setup.init(3), batches[:2])
    state = fixtures.put(state, setup.state_shardings)
    ckpt = checkpointing.Checkpointer(tempfile.mkdtemp(), every=1, keep=2)
    ckpt.save(2, state, force=True)
    ckpt.wait()
    expected, _ = run_steps(setup, state, batches[2:])

    restored = ckpt.restore(setup.abstract_state)
    self.assertEqual(int(restored.step), 2)
    got, _ = run_steps(setup, restored, batches[2:])
    jax.tree.map(np.testing.assert_array_equal, expected, got)

    # The same checkpoint restores onto one device and keeps training to the same numbers.
    single = fixtures.setup_on(jax.devices()[:1], (1, 1, 1))
    on_one = ckpt.restore(single.abstract_state)
    leaf = jax.tree.leaves(on_one.params)[0]
    self.assertEqual(len(leaf.sharding.device_set), 1)
    got1, _ = run_steps(single, on_one, batches[2:])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6),
                 expected.params, got1.params)
    ckpt.close()

  def test_no_checkpoint_restores_none(self):
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1))
    ckpt = checkpointing.Checkpointer(tempfile.mkdtemp(), every=1, keep=1)
    self.assertIsNone(ckpt.restore(setup.abstract_state))
    ckpt.close()


if __name__ == "__main__":
  absltest.main()
