"""The retrieval tasks' in-batch contrastive loss: symmetric, masks accidental hits and
undecodable clips, learns its temperature."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from vidrec_jax.models import retrieval


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(q, t, scale, valid, group):
  """The loss written out row by row in numpy."""
  total, n = 0.0, 0
  for i in range(len(q)):
    if not valid[i]:
      continue
    keep = [j for j in range(len(q)) if valid[j] and (j == i or group[j] != group[i])]
    row = scale * q[i] @ t[keep].T
    col = scale * t[i] @ q[keep].T
    own = keep.index(i)
    total += 0.5 * (np.log(np.exp(row).sum()) - row[own] + np.log(np.exp(col).sum()) - col[own])
    n += 1
  return total / n


class ContrastiveLossTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.q = _unit(rng.normal(size=(6, 5)))
    self.t = _unit(rng.normal(size=(6, 5)))

  def loss(self, q, t, log_scale, valid, group):
    return float(retrieval.contrastive_loss(jnp.asarray(q), jnp.asarray(t),
                                            jnp.asarray(log_scale, jnp.float32),
                                            jnp.asarray(valid), jnp.asarray(group)))

  def test_matches_the_row_by_row_reference_with_masks(self):
    valid = np.array([1, 1, 0, 1, 1, 1])
    group = np.array([0, 1, 2, 1, 3, 4])  # rows 1 and 3 are the same video / title
    got = self.loss(self.q, self.t, np.log(10.0), valid, group)
    want = _reference(self.q, self.t, 10.0, valid, group)
    self.assertAlmostEqual(got, want, places=5)

  def test_symmetric_in_its_two_sides(self):
    valid, group = np.ones(6, np.int32), np.arange(6)
    self.assertAlmostEqual(self.loss(self.q, self.t, 2.0, valid, group),
                           self.loss(self.t, self.q, 2.0, valid, group), places=5)

  def test_an_accidental_hit_is_not_a_negative(self):
    # Rows 0 and 1 are the same item with identical embeddings: unmasked, each would be a
    # perfect "negative" of the other and the loss could never go below log 2.
    q = _unit(np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]))
    valid = np.ones(4, np.int32)
    unmasked = self.loss(q, q, np.log(100.0), valid, np.arange(4))
    masked = self.loss(q, q, np.log(100.0), valid, np.array([0, 0, 1, 2]))
    self.assertGreater(unmasked, 0.3)
    self.assertLess(masked, 1e-3)

  def test_invalid_rows_change_nothing(self):
    valid = np.array([1, 1, 1, 1, 0, 0])
    junk = self.t.copy()
    junk[4:] = self.q[:2]  # an invalid row that would be a strong negative
    a = self.loss(self.q, self.t, 2.0, valid, np.arange(6))
    b = self.loss(self.q, junk, 2.0, valid, np.arange(6))
    c = self.loss(self.q[:4], self.t[:4], 2.0, np.ones(4, np.int32), np.arange(4))
    self.assertAlmostEqual(a, b, places=6)
    self.assertAlmostEqual(a, c, places=5)

  def test_temperature_is_learnable_and_clipped(self):
    q = jnp.asarray(self.q)
    grad = jax.grad(lambda s: retrieval.contrastive_loss(q, q, s, jnp.ones(6), jnp.arange(6)))(
        jnp.float32(1.0))
    self.assertLess(float(grad), 0.0)  # aligned pairs: a sharper softmax lowers the loss
    at_clip = self.loss(self.q, self.t, np.log(100.0), np.ones(6), np.arange(6))
    beyond = self.loss(self.q, self.t, np.log(1e4), np.ones(6), np.arange(6))
    self.assertAlmostEqual(at_clip, beyond, places=5)


if __name__ == "__main__":
  absltest.main()
