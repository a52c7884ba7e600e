"""REINFORCE corrections: the two toy simulations of Chen et al. (WSDM 2019, section 4.3 and
figures 1-2), run on the library's loss (rl/losses.py) with exact expectations over the
behaviour policy, plus weight capping and the top-K factor on hand-computed values, and the
off-policy estimates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from vidrec_jax.rl import losses
from vidrec_jax.rl import trainer as rl_trainer


def _train(correction: str, rewards: np.ndarray, beta: np.ndarray, k: int = 1,
           steps: int = 3000, cap: float = 1e9) -> np.ndarray:
  """Trains softmax logits theta (one state) on the expected loss under beta: every action is
  one example whose mask is its behaviour probability. Returns pi."""
  n = len(rewards)
  action = jnp.arange(n)
  tx = optax.adam(0.05)

  def loss(theta):
    logits = jnp.broadcast_to(theta, (n, n))
    return losses.reinforce_loss(logits, action, jnp.asarray(beta, jnp.float32),
                                 jnp.asarray(rewards, jnp.float32),
                                 jnp.asarray(beta, jnp.float32), correction, cap, k)[0]

  def step(carry, _):
    theta, opt = carry
    g = jax.grad(loss)(theta)
    upd, opt = tx.update(g, opt)
    return (optax.apply_updates(theta, upd), opt), None

  theta = jnp.zeros(n)
  (theta, _), _ = jax.lax.scan(step, (theta, tx.init(theta)), None, length=steps)
  return np.asarray(jax.nn.softmax(theta))


class ToySimulationTest(absltest.TestCase):

  def test_off_policy_correction_finds_the_best_item_the_uncorrected_copies_behaviour(self):
    # 10 items, reward r(a_i) = i; the behaviour policy favours low rewards (beta ~ 11 - i).
    r = np.arange(1, 11, dtype=np.float64)
    beta = (11 - r) / (11 - r).sum()
    corrected = _train("standard", r, beta)
    uncorrected = _train("none", r, beta)
    self.assertGreater(corrected[9], 0.95)
    # Without correction the fixed point is pi ~ beta * r: the logged distribution reweighted,
    # its mode in the middle, nowhere near a_10.
    np.testing.assert_allclose(uncorrected, beta * r / (beta * r).sum(), atol=0.02)
    self.assertLess(uncorrected[9], 0.1)
    self.assertIn(int(np.argmax(uncorrected)), (4, 5))

  def test_top_k_correction_keeps_mass_on_the_second_item(self):
    # Rewards 10, 9, then 1 for eight items; K = 2; uniform behaviour.
    r = np.array([10.0, 9.0] + [1.0] * 8)
    beta = np.full(10, 0.1)
    standard = _train("standard", r, beta, k=2)
    topk = _train("topk", r, beta, k=2)
    self.assertGreater(standard[0], 0.95)
    self.assertLess(standard[1], 0.05)
    # Stationary point of the top-K gradient: K(1-pi_1) r_1 = K(1-pi_2) r_2 -> pi_2 ~ 0.47.
    self.assertGreater(topk[1], 0.3)
    self.assertGreater(topk[0] + topk[1], 0.95)


class WeightsTest(absltest.TestCase):

  def test_capping_and_top_k_factor(self):
    pi = jnp.array([0.5, 0.01, 0.9])
    beta = jnp.array([0.01, 0.02, 0.0])
    ret = jnp.array([2.0, 3.0, 1.0])
    cap = math.exp(3.0)
    np.testing.assert_allclose(losses.capped_ratio(pi, beta, cap), [cap, 0.5, cap], rtol=1e-6)
    np.testing.assert_allclose(losses.topk_factor(pi, 4), 4 * (1 - np.array(pi)) ** 3,
                               rtol=1e-6)
    np.testing.assert_allclose(losses.weights("standard", pi, beta, ret, cap, 4),
                               [2 * cap, 1.5, cap], rtol=1e-6)
    np.testing.assert_allclose(
        losses.weights("topk", pi, beta, ret, cap, 4),
        np.array([2 * cap, 1.5, cap]) * 4 * (1 - np.array(pi)) ** 3, rtol=1e-5)
    np.testing.assert_allclose(losses.weights("none", pi, beta, ret, cap, 4), ret)
    np.testing.assert_allclose(losses.weights("supervised", pi, beta, ret, cap, 4), 1.0)
    # The de-biased click model: the capped ratio alone, whatever the return.
    np.testing.assert_allclose(losses.weights("ips_click", pi, beta, ret, cap, 4),
                               [cap, 0.5, cap], rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "unknown correction 'x'; registered: ips_click, "
                                "none, standard, supervised, topk"):
      losses.weights("x", pi, beta, ret, cap, 4)

  def test_loss_is_the_masked_weighted_log_likelihood_without_gradient_in_the_weight(self):
    logits = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
    action, beta = jnp.array([2, 0]), jnp.array([0.5, 0.25])
    ret, mask = jnp.array([3.0, 5.0]), jnp.array([1.0, 0.0])
    loss, stats = losses.reinforce_loss(logits, action, beta, ret, mask, "standard", 20.0, 1)
    logp = np.log(np.exp(2.0) / np.exp([0.0, 1.0, 2.0]).sum())
    w = np.exp(logp) / 0.5 * 3.0
    self.assertAlmostEqual(float(loss), -w * logp, places=5)
    self.assertAlmostEqual(float(stats["weight_mean"]), w, places=5)
    # d/dtheta of -w log pi with w held fixed: w * (pi - onehot).
    g = jax.grad(lambda lg: losses.reinforce_loss(lg, action, beta, ret, mask, "standard",
                                                  20.0, 1)[0])(logits)
    pi = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    np.testing.assert_allclose(g[0], w * (pi - np.eye(3)[2]), rtol=1e-5)
    np.testing.assert_allclose(g[1], 0.0)


class BatchTest(absltest.TestCase):

  def _logs(self):
    from vidrec_jax.rl.logs import Logs  # pylint: disable=g-import-not-at-top
    hist = np.array([[3, -1], [3, 4]])
    return Logs(user=np.array([0, 0]), session=np.array([0, 0]), step=np.array([0, 1]),
                history=hist, slate=np.array([[4, 5, 6], [7, 8, 9]]),
                beta=np.array([[0.1, 0.2, 0.3], [0.4, 0.05, 0.15]], np.float32),
                choice=np.array([0, -1]), video=np.array([4, -1]),
                reward=np.array([2.0, 0.0], np.float32), ret=np.array([2.5, 0.5], np.float32),
                num_sessions=1, final_histories=hist)

  def test_clicked_actions(self):
    b = rl_trainer.batch_of(self._logs(), np.array([0, 1]), "clicked")
    np.testing.assert_array_equal(b["action"], [[4], [0]])
    np.testing.assert_allclose(b["beta"], [[0.1], [1.0]])
    np.testing.assert_array_equal(b["mask"], [[1.0], [0.0]])  # no click: no action
    np.testing.assert_array_equal(b["history_mask"], [[1, 0], [1, 1]])
    np.testing.assert_allclose(b["ret"], [2.5, 0.5])

  def test_slate_actions(self):
    logs = self._logs()
    b = rl_trainer.batch_of(logs, np.array([1, 0]), "slate")
    np.testing.assert_array_equal(b["action"], logs.slate[[1, 0]])
    np.testing.assert_allclose(b["beta"], logs.beta[[1, 0]])
    np.testing.assert_array_equal(b["mask"], np.ones((2, 3)))
    with self.assertRaisesRegex(ValueError, "unknown rl.actions 'all'; allowed: clicked, slate"):
      rl_trainer.batch_of(logs, np.array([0]), "all")


if __name__ == "__main__":
  absltest.main()
