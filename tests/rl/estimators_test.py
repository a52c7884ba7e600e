"""Off-policy estimators against known truths: the exact without-replacement slate inclusion
against enumeration of every ordered slate; IPS and SNIPS within 3 standard errors of a
bandit's true value where most logged rows have no click (the earlier SNIPS, normalised over
the clicked rows only, lands far off); and slates drawn without replacement, where weighting
the behaviour by the with-replacement formula biases IPS."""

import itertools

import numpy as np
from absl.testing import absltest

from vidrec_jax.rl import estimators


def _enumerated_inclusion(logits: np.ndarray, k: int) -> np.ndarray:
  """P(j in S) by summing the Plackett-Luce probability of every ordered K-slate."""
  p = np.exp(logits - logits.max())
  p /= p.sum()
  out = np.zeros(len(p))
  for order in itertools.permutations(np.flatnonzero(p > 0), k):
    prob, left = 1.0, 1.0
    for j in order:
      prob *= p[j] / left
      left -= p[j]
    out[list(order)] += prob
  return out


def _draw_without_replacement(rng, logits: np.ndarray, k: int, n: int) -> np.ndarray:
  g = rng.gumbel(size=(n, len(logits))) + logits[None]
  return np.argsort(-g, axis=1)[:, :k]


class InclusionTest(absltest.TestCase):

  def test_exact_inclusion_matches_enumeration(self):
    rng = np.random.default_rng(0)
    for n, k in ((6, 1), (6, 3), (7, 4)):
      logits = rng.normal(0.0, 2.0, (3, n))
      logits[1, 2] = -np.inf  # a video the policy cannot show
      for row in logits:
        truth = _enumerated_inclusion(row, k)
        slates = np.stack([rng.choice(np.flatnonzero(np.isfinite(row)), k, replace=False)
                           for _ in range(4)])
        got = estimators.slate_inclusion(np.repeat(row[None], 4, 0), slates)
        np.testing.assert_allclose(got, truth[slates], rtol=2e-5)
        # K = 1 is the single-draw probability.
        self.assertAlmostEqual(float(truth.sum()), float(k), places=9)

  def test_a_slate_video_the_policy_cannot_draw_is_refused(self):
    with self.assertRaisesRegex(ValueError, "zero probability under the policy"):
      estimators.slate_inclusion(np.array([[0.0, -np.inf, 1.0]]), np.array([[0, 1]]))

  def test_target_inclusion_as_served(self):
    logits = np.array([[3.0, 1.0, 2.0, -np.inf, 0.0]])
    slate = np.array([[0, 1, 3]])
    np.testing.assert_array_equal(
        estimators.target_inclusion("top_k", logits, slate, 2), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(  # 2 of the 4 videos it may show
        estimators.target_inclusion("uniform", logits, slate, 2), [[0.5, 0.5, 0.0]])
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    np.testing.assert_allclose(estimators.target_inclusion("sample_replace", logits, slate, 2),
                               [1 - (1 - p[[0, 1, 3]]) ** 2])
    np.testing.assert_allclose(
        estimators.target_inclusion("sample", logits, slate[:, :2], 2),
        [_enumerated_inclusion(logits[0], 2)[[0, 1]]], rtol=2e-5)
    with self.assertRaisesRegex(ValueError, "unknown serving 'greedy'; allowed: top_k"):
      estimators.target_inclusion("greedy", logits, slate, 2)


class BanditTest(absltest.TestCase):

  def test_ips_and_snips_are_within_three_standard_errors_of_the_truth(self):
    # One video shown per step, drawn from beta; the user clicks it with probability p and a
    # click earns r. The target pi's value is sum_a pi_a p_a r_a = 0.630.
    rng = np.random.default_rng(0)
    beta, pi = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.3, 0.6])
    p_click, r = np.array([0.9, 0.5, 0.1]), np.array([1.0, 2.0, 4.0])
    truth = float((pi * p_click * r).sum())
    self.assertAlmostEqual(truth, 0.630)
    n = 200_000
    a = rng.choice(3, n, p=beta)
    clicked = rng.random(n) < p_click[a]
    reward = np.where(clicked, r[a], 0.0)[:, None]
    est = estimators.off_policy_values(pi[a][:, None], beta[a][:, None], reward, n)
    for name in ("ips", "snips"):
      self.assertLess(abs(est[name] - truth), 3 * est[f"{name}_se"], (name, est))
      self.assertLess(est[f"{name}_se"], 0.01)
    self.assertAlmostEqual(est["weight_mean"], 1.0, delta=0.01)
    # Normalising by the clicked rows' weights alone (the earlier SNIPS) is far off.
    w = pi[a] / beta[a]
    clicked_only = (w * reward[:, 0]).sum() / w[clicked].sum() * clicked.sum() / n
    self.assertGreater(clicked_only, 1.4)
    self.assertGreater(abs(clicked_only - truth), 50 * est["snips_se"])

  def test_slates_drawn_without_replacement_need_the_exact_behaviour_inclusion(self):
    # K = 2 of 5 videos drawn without replacement from beta; each shown video is clicked
    # independently with p and earns r. The target shows its top 2 (videos 3 and 4): truth =
    # p_3 r_3 + p_4 r_4 = 1.3.
    rng = np.random.default_rng(1)
    k, n = 2, 200_000
    beta_logits = np.log([0.4, 0.3, 0.15, 0.1, 0.05])
    target_logits = np.array([[0.0, 1.0, 2.0, 3.0, 4.0]])
    p_click, r = np.array([0.9, 0.5, 0.3, 0.2, 0.1]), np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    truth = 0.2 * 4.0 + 0.1 * 5.0
    slates = _draw_without_replacement(rng, beta_logits, k, n)
    reward = np.where(rng.random((n, k)) < p_click[slates], r[slates], 0.0)
    exact = _enumerated_inclusion(beta_logits, k)
    got = estimators.slate_inclusion(np.repeat(beta_logits[None], 4, 0),
                                     np.array([[0, 4], [4, 1], [2, 3], [3, 0]]))
    np.testing.assert_allclose(got, exact[[[0, 4], [4, 1], [2, 3], [3, 0]]], rtol=2e-5)
    target = estimators.target_inclusion("top_k", np.repeat(target_logits, n, 0), slates, k)
    est = estimators.off_policy_values(target, exact[slates], reward, n)
    self.assertLess(abs(est["ips"] - truth), 3 * est["ips_se"], est)
    # SNIPS normalises by the target's mean weight, which is not one here (the target shows
    # 2 of the videos beta shows with probability 0.22 and 0.12): it estimates another
    # quantity, so only IPS is held to the truth.
    beta_single = np.exp(beta_logits)
    with_replacement = 1.0 - (1.0 - beta_single[slates]) ** k
    biased = estimators.off_policy_values(target, with_replacement, reward, n)
    self.assertGreater(abs(biased["ips"] - truth), 5 * est["ips_se"], (biased, est))


if __name__ == "__main__":
  absltest.main()
