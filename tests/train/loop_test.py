"""The loop's metric reduction stops on the first non-finite loss and names its step."""

import numpy as np
from absl.testing import absltest

from vidrec_jax.train import loop


class ReduceTest(absltest.TestCase):

  def test_averages_finite_window(self):
    out = loop._reduce([{"loss": np.float32(1.0)}, {"loss": np.float32(3.0)}], first_step=10)
    self.assertAlmostEqual(out["loss"], 2.0)

  def test_nan_names_the_step(self):
    window = [{"loss": np.float32(1.0)}, {"loss": np.float32(np.nan)},
              {"loss": np.float32(np.inf)}]
    with self.assertRaisesRegex(loop.NonFiniteLossError, "at step 12"):
      loop._reduce(window, first_step=10)


if __name__ == "__main__":
  absltest.main()
