"""benchmarks/stats.py: the sample SD (ddof 1), the Welch and paired tests against their
textbook values, and verdicts that say "ahead" only at p < 0.05."""

import os
import sys

import numpy as np
from absl.testing import absltest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import stats  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


class StatsTest(absltest.TestCase):

  def test_summary_is_the_sample_sd(self):
    mean, sd, n = stats.summary([1.0, 2.0, 4.0])
    self.assertAlmostEqual(mean, 7 / 3)
    self.assertAlmostEqual(sd, np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2)
                                       / 2))
    self.assertEqual(n, 3)
    self.assertEqual(stats.fmt([0.5, 0.7]), "0.600 ± 0.141 (n=2)")
    self.assertEqual(stats.fmt([0.5]), "0.500 (n=1)")
    with self.assertRaisesRegex(ValueError, "no values"):
      stats.summary([])

  def test_welch_by_hand(self):
    a, b = np.array([0.0726, 0.0690, 0.0650]), np.array([0.0584, 0.0586, 0.0585])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    t, p = stats.welch(a, b)
    self.assertAlmostEqual(t, (a.mean() - b.mean()) / np.sqrt(va + vb), places=6)
    self.assertTrue(0.0 < p < 0.05)
    self.assertIn("a ahead", stats.verdict(a, b))
    # The README's recorded gap: three seeds each, t ~ 1.1 -> level.
    self.assertIn("level within noise", stats.verdict([0.0726, 0.0571, 0.0600],
                                                     [0.0584, 0.0586, 0.0585]))

  def test_paired_sees_what_welch_cannot(self):
    # Worlds differ a lot, the variant is ahead by 0.01 on every one of them.
    base = np.array([0.5, 0.7, 0.9, 0.6])
    variant = base + np.array([0.011, 0.009, 0.010, 0.012])
    self.assertIn("level within noise", stats.verdict(variant, base, ("v", "b")))
    self.assertIn("v ahead", stats.verdict(variant, base, ("v", "b"), test="paired"))
    self.assertIn("b ahead", stats.verdict(variant, base, ("v", "b"), test="paired",
                                           higher_is_better=False))
    with self.assertRaisesRegex(ValueError, "matched runs"):
      stats.paired([1.0, 2.0], [1.0])

  def test_best_is_chosen_by_valid(self):
    self.assertEqual(stats.best_by_valid({"x": [0.5, 0.6], "y": [0.7, 0.4], "z": [0.56]}),
                     "z")
    self.assertEqual(stats.best_by_valid({"x": [1.0], "y": [2.0]}, higher_is_better=False), "x")


if __name__ == "__main__":
  absltest.main()
