"""Orbax round trip: restoring then training continues exactly as without the interruption,
also onto another mesh."""

import os
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

  def test_corrupted_newest_checkpoint_falls_back_and_says_so(self):
    setup = fixtures.setup_on(jax.devices()[:2], (2, 1, 1))
    batches = [fixtures.fake_batch(setup.config, seed=s) for s in range(2)]
    directory = tempfile.mkdtemp()
    ckpt = checkpointing.Checkpointer(directory, every=1, keep=3)
    state = setup.init(0)
    saved = {}
    for step, batch in enumerate(batches, start=1):
      state, _ = run_steps(setup, state, [batch])
      state = fixtures.put(state, setup.state_shardings)
      saved[step] = jax.device_get(state.params)
      ckpt.save(step, state, force=True)
    ckpt.wait()
    # A crash in the middle of the newest save: its array data is truncated.
    newest = os.path.join(directory, "2", "state")
    data = [os.path.join(d, f) for d, _, fs in os.walk(newest) for f in fs
            if os.path.getsize(os.path.join(d, f)) > 64]
    self.assertNotEmpty(data)
    for f in data:
      with open(f, "r+b") as fh:
        fh.truncate(16)
    with self.assertLogs(level="WARNING") as logs:
      restored = ckpt.restore(setup.abstract_state)
    self.assertIn("checkpoint at step 2", "\n".join(logs.output))
    self.assertIn("falling back to step 1", "\n".join(logs.output))
    self.assertEqual(int(restored.step), 1)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params), saved[1])
    ckpt.close()

  def test_no_checkpoint_restores_none(self):
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1))
    ckpt = checkpointing.Checkpointer(tempfile.mkdtemp(), every=1, keep=1)
    self.assertIsNone(ckpt.restore(setup.abstract_state))
    ckpt.close()


if __name__ == "__main__":
  absltest.main()
