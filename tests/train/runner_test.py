"""The shared loop's metric reduction stops on the first non-finite loss and names its step; a real
run that diverges stops before saving the bad state, and its last checkpoint is intact."""

import os
import tempfile

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl.testing import absltest

from tests import helpers
from tests.main_test import run_main
from vidrec_jax.train import runner


class ReduceTest(absltest.TestCase):

  def test_averages_finite_window(self):
    out = runner.reduce_window([{"loss": np.float32(1.0)}, {"loss": np.float32(3.0)}],
                               first_step=10)
    self.assertAlmostEqual(out["loss"], 2.0)

  def test_nan_names_the_step(self):
    window = [{"loss": np.float32(1.0)}, {"loss": np.float32(np.nan)},
              {"loss": np.float32(np.inf)}]
    with self.assertRaisesRegex(runner.NonFiniteLossError, "at step 12"):
      runner.reduce_window(window, first_step=10)


class DivergenceTest(absltest.TestCase):

  def test_a_nan_step_stops_the_run_before_its_state_is_saved(self):
    workdir = tempfile.mkdtemp()
    # A learning rate of 1e30 blows the parameters up at the first update. Metrics are logged
    # only every 100 steps, so the check before each save must catch it.
    r = run_main(f"--config={os.path.join(helpers.REPO, 'configs', 'demo.py')}:smoke",
                 f"--workdir={workdir}", f"--config.data.data_dir={helpers.smoke_world_dir()}",
                 "--config.train.learning_rate=1e30", "--config.train.warmup_steps=0",
                 "--config.train.log_every=100", "--config.train.checkpoint_every=1")
    self.assertEqual(r.returncode, 1, r.stderr[-2000:])
    self.assertIn("error: loss is nan at step 2; stopping (the last checkpoint is intact)",
                  r.stderr)
    self.assertEqual(os.listdir(os.path.join(workdir, "checkpoints")), ["1"])
    params = ocp.PyTreeCheckpointer().restore(
        os.path.join(workdir, "checkpoints", "1", "state"))["params"]
    for leaf in jax.tree.leaves(params):
      self.assertTrue(np.isfinite(np.asarray(leaf)).all())


if __name__ == "__main__":
  absltest.main()
