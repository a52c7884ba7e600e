"""Orbax round trip: restoring then training continues exactly as without the interruption,
also onto another mesh."""

import os
import tempfile

import jax
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.train import fixtures
from tests.train.sharding_test import run_steps
from vidrec_jax.train import checkpointing


class CheckpointTest(absltest.TestCase):

  def test_restore_then_continue_identically(self):
    config = helpers.load_config()
    setup = fixtures.setup_on(jax.devices()[:8], (4, 2, 1), config)
    batches = [fixtures.fake_batch(config, seed=s) for s in range(4)]
    state, _ = run_steps(setup, setup.init(3), batches[:2])
    state = fixtures.put(state, setup.state_shardings)
    ckpt = checkpointing.Checkpointer(tempfile.mkdtemp(), every=1, keep=2)
    ckpt.save(2, state, force=True)
    ckpt.wait()
    expected, _ = run_steps(setup, state, batches[2:])

    restored = ckpt.restore(setup.abstract_state)
    self.assertEqual(restored.step, 2)
    self.assertEqual(int(restored.state.step), 2)
    got, _ = run_steps(setup, restored.state, batches[2:])
    jax.tree.map(np.testing.assert_array_equal, expected, got)

    # The same checkpoint restores onto a (2, 1) mesh and onto one device, each array laid out
    # on its new mesh as it is read, and training continues to the same numbers.
    for devices, shape in ((jax.devices()[:2], (2, 1, 1)), (jax.devices()[:1], (1, 1, 1))):
      other = fixtures.setup_on(devices, shape)
      moved = ckpt.restore(other.abstract_state).state
      for leaf, want in zip(jax.tree.leaves(moved), jax.tree.leaves(other.state_shardings)):
        self.assertTrue(leaf.sharding.is_equivalent_to(want, leaf.ndim), str(shape))
      got_other, _ = run_steps(other, moved, batches[2:])
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6),
                   expected.params, got_other.params)
    ckpt.close()

  def test_best_checkpoint_is_kept_by_its_metric(self):
    config = helpers.load_config()
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), config)
    directory = tempfile.mkdtemp()
    ckpt = checkpointing.Checkpointer(directory, every=1, keep=1, best_metric="valid/all/auc")
    state = setup.init(0)
    saved = {}
    for step, auc in ((1, 0.61), (2, 0.70), (3, 0.65)):
      state, _ = run_steps(setup, state, [fixtures.fake_batch(config, seed=step)])
      state = fixtures.put(state, setup.state_shardings)
      saved[step] = jax.device_get(state.params)
      ckpt.save(step, state, checkpointing.data_position(step, 16, 0))
      ckpt.save_best(step, state, {"valid/all/auc": auc, "valid/all/gauc": 0.5})
    # The kept step offered again (the final eval of a resumed, finished run) is not an error.
    ckpt.save_best(2, state, {"valid/all/auc": 0.70})
    ckpt.close()
    reopened = checkpointing.Checkpointer(directory, every=1, keep=1, best_metric="valid/all/auc")
    self.assertEqual(reopened.latest_step(), 3)  # keep=1: only the newest of the regular ones
    self.assertEqual(reopened.best_step(), 2)
    best = reopened.restore(setup.abstract_state, best=True)
    self.assertEqual(best.step, 2)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(best.state.params), saved[2])
    self.assertEqual(os.listdir(checkpointing.best_directory(directory)), ["2"])
    latest = reopened.restore(setup.abstract_state)
    self.assertEqual(latest.data, checkpointing.data_position(3, 16, 0))
    reopened.close()

  def test_a_changed_data_stream_is_refused_in_one_line(self):
    saved = checkpointing.data_position(5, 16, 0)
    self.assertEqual(checkpointing.check_data_position(saved, checkpointing.data_position(
        5, 16, 0)), 5)
    with self.assertRaisesRegex(checkpointing.DataPositionError,
                                "data.batch_size=16 but the config has 32"):
      checkpointing.check_data_position(saved, checkpointing.data_position(5, 32, 0))

  def test_corrupted_newest_checkpoint_falls_back_and_says_so(self):
    config = helpers.load_config()
    setup = fixtures.setup_on(jax.devices()[:2], (2, 1, 1), config)
    batches = [fixtures.fake_batch(config, seed=s) for s in range(2)]
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
    self.assertEqual(restored.step, 1)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.state.params), saved[1])
    ckpt.close()

  def test_a_relative_directory_saves_and_restores(self):
    # --workdir=runs/x: orbax refuses to restore from a relative path unless it is resolved.
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), helpers.load_config())
    state = setup.init(0)
    root = tempfile.mkdtemp()
    self.addCleanup(os.chdir, os.getcwd())
    os.chdir(root)
    ckpt = checkpointing.Checkpointer(os.path.join("wd", "checkpoints"), every=1, keep=1)
    ckpt.save(1, state, force=True)
    ckpt.wait()
    self.assertEqual(ckpt.directory, os.path.join(os.getcwd(), "wd", "checkpoints"))
    restored = ckpt.restore(setup.abstract_state)
    ckpt.close()
    self.assertEqual(restored.step, 1)
    jax.tree.map(np.testing.assert_array_equal, state.params, restored.state.params)

  def test_no_checkpoint_restores_none(self):
    config = helpers.load_config()
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), config)
    ckpt = checkpointing.Checkpointer(tempfile.mkdtemp(), every=1, keep=1)
    self.assertIsNone(ckpt.restore(setup.abstract_state))
    ckpt.close()


if __name__ == "__main__":
  absltest.main()
