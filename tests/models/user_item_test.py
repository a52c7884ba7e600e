"""The two-tower retrieval task (`user_item`): logQ correction and accidental-hit masking on a
constructed batch, and the retrieval-then-ranking evaluator against its list metrics."""

import functools
import types
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.train import fixtures
from vidrec_jax import metrics as metrics_lib
from vidrec_jax import validate
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.data import pipeline
from vidrec_jax.eval.evaluators import two_stage
from vidrec_jax.models import tasks
from vidrec_jax.models.partitioning import activation_sharding
from vidrec_jax.train import steps


class MaskTest(absltest.TestCase):

  def test_hits_are_masked_and_the_positive_kept(self):
    # Three clips (videos 10, 11, 10), two impressions each.
    video = jnp.asarray([10, 11, 10])
    user = jnp.asarray([[1, 2], [1, 3], [4, 5]])
    positive = jnp.asarray([[1, 0], [1, 1], [0, 1]], jnp.float32)
    valid = jnp.asarray([1, 1, 1])
    keep = np.asarray(tasks.user_item_keep(video, user, positive, valid))
    self.assertEqual(keep.shape, (6, 3))
    np.testing.assert_array_equal(keep[np.arange(6), np.repeat(np.arange(3), 2)], True)
    # Row 0 (user 1, clip 0, video 10): clip 2 is video 10 (a hit), clip 1 user 1 clicked.
    np.testing.assert_array_equal(keep[0], [True, False, False])
    # Row 1 (user 2, clip 0): clip 1 is a negative, clip 2 the same video.
    np.testing.assert_array_equal(keep[1], [True, True, False])
    # Row 3 (user 3, clip 1, video 11): both other clips are negatives.
    np.testing.assert_array_equal(keep[3], [True, True, True])
    # Row 2 (user 1, clip 1): clip 0 was clicked by user 1 -> masked; clip 2 is a negative.
    np.testing.assert_array_equal(keep[2], [False, True, True])
    # An unreadable clip is nobody's negative.
    keep = np.asarray(tasks.user_item_keep(video, user, positive, jnp.asarray([1, 0, 1])))
    self.assertTrue(keep[3, 1])  # its own row keeps it (it weighs nothing: valid=0)
    self.assertFalse(keep[1, 1])

  def test_logq_subtracts_each_clips_log_probability(self):
    u = jnp.asarray([[[1.0, 0.0]], [[0.0, 1.0]]])  # (B=2, M=1, E)
    i = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    log_q = jnp.log(jnp.asarray([0.5, 0.01]))
    logits = np.asarray(tasks.user_item_logits(u, i, jnp.log(jnp.asarray(10.0)), log_q))
    expected = 10.0 * np.eye(2) - np.log([0.5, 0.01])[None, :]
    np.testing.assert_allclose(logits, expected, rtol=1e-5)
    # The correction favours the rarely sampled clip: it raises that clip's logit most.
    self.assertGreater(logits[0, 1] - 0.0, logits[1, 0] - 0.0)

  def test_clip_log_q_is_the_share_of_clips(self):
    video_ids = np.asarray([3, 3, 3, 5, 5, 0])
    groups = np.asarray([[0, 1], [2, -1], [3, 4], [5, -1]])  # video 3 twice, 5 once, 0 once
    np.testing.assert_allclose(np.exp(pipeline.clip_log_q(video_ids, groups))[[0, 3, 5]],
                               [0.25, 0.5, 0.25])
    self.assertEqual(np.exp(pipeline.clip_log_q(video_ids, groups))[1], 0.0)


class NormalizeTest(absltest.TestCase):

  def test_unit_rows_and_finite_gradients_at_zero_rows(self):
    x = jnp.asarray([[3.0, 4.0], [0.0, 0.0]])
    y = np.asarray(tasks.l2_normalize(x))
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    g = np.asarray(jax.grad(lambda x: jnp.sum(tasks.l2_normalize(x) * jnp.asarray([1.0, 2.0])))(x))
    self.assertTrue(np.all(np.isfinite(g)))  # sqrt'(0) = inf made this NaN
    # Row 0: (I - y y^T) c / |x|; the zero row passes c through as it is.
    yy = np.asarray([0.6, 0.8])
    np.testing.assert_allclose(g[0], (np.eye(2) - np.outer(yy, yy)) @ [1.0, 2.0] / 5.0,
                               rtol=1e-5)
    np.testing.assert_allclose(g[1], [1.0, 2.0])


class TopKTest(absltest.TestCase):

  def test_catalog_top_k_on_eight_devices_matches_numpy(self):
    config = helpers.load_config("smoke,ple", "multitask.py")
    setup = fixtures.setup_on(jax.devices()[:8], (4, 2, 1), config)
    params = setup.init(0).params
    rng = np.random.default_rng(0)
    users = rng.normal(size=(5, config.model.embed_dim)).astype(np.float32)
    items = rng.normal(size=(64, config.model.embed_dim)).astype(np.float32)
    fn = jax.jit(functools.partial(steps.retrieval_topk_step, setup), static_argnums=(3,))
    with activation_sharding(setup.mesh, setup.rules):
      scores, idx = fn(params, users, items, 7)
    model = setup.model(jax.device_get(params))
    qu, qi = (np.asarray(x) for x in model.retrieval_vectors(jnp.asarray(users),
                                                            jnp.asarray(items)))
    full = qu @ qi.T
    np.testing.assert_array_equal(np.asarray(idx), np.argsort(-full, axis=1)[:, :7])
    np.testing.assert_allclose(np.asarray(scores), np.sort(full, axis=1)[:, ::-1][:, :7],
                               rtol=1e-5, atol=1e-5)


class TwoStageEvaluatorTest(absltest.TestCase):

  def test_metrics_from_retrieval_and_ranking(self):
    config = helpers.load_config("smoke,ple", "multitask.py")
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), config)
    rng = np.random.default_rng(0)
    n, d = 12, config.model.embed_dim
    # Users 0 and 1 clicked videos 2, 5 and 7; video 5 is cold; video 3 cannot be decoded.
    cols = {"user_id": np.asarray([0, 0, 1, 1]), "video_id": np.asarray([2, 5, 7, 3]),
            "click": np.asarray([1, 1, 1, 0], np.float32)}
    cold = np.zeros(n, bool)
    cold[5] = True
    decodable = np.ones(n, bool)
    decodable[3] = False
    catalog = type("Catalog", (), {"cold": cold, "__len__": lambda self: n})()
    ctx = types.SimpleNamespace(
        setup=setup, user_vocab=lambda ids: np.asarray(ids),
        dataset=types.SimpleNamespace(catalog=catalog, splits=("test",),
                                      split=lambda s: types.SimpleNamespace(columns=cols)))
    click = rng.random((2, n))
    enc = types.SimpleNamespace(
        params=setup.init(0).params, decodable=decodable,
        item_vectors=rng.normal(size=(n, d)).astype(np.float32),
        user_vectors=rng.normal(size=(3, d)).astype(np.float32),
        predict=lambda c: {"click": click[c["user_id"], c["video_id"]]})
    ev = two_stage.TwoStageEvaluator(ctx, splits=("test",), k=4, candidates=6, ndcg_k=3)
    cand = ev.retrieve(enc, np.asarray([0, 1]), n)
    self.assertEqual(cand.shape, (2, n - 1))  # every readable video, the unreadable one never
    self.assertNotIn(3, cand)
    out = ev.evaluate(enc, None)
    relevant = [{2, 5}, {7}]
    np.testing.assert_allclose(out["test/retrieval/recall@4"],
                               np.mean(metrics_lib.recall_of_lists(cand, relevant, 4)))
    ranked = np.argsort(-np.where(decodable, click, -np.inf), axis=1, kind="stable")
    np.testing.assert_allclose(out["test/full_rank/ndcg@3"],
                               np.mean(metrics_lib.ndcg_of_lists(ranked, relevant, 3)))
    self.assertEqual(out["test/retrieval/users"], 2)
    self.assertEqual(out["test/full_rank/users"], 2)
    # Stage 2 ranks each user's candidates by the click head.
    two = np.take_along_axis(cand[:, :6], np.argsort(-np.take_along_axis(
        click, cand[:, :6], axis=1), axis=1, kind="stable"), axis=1)
    np.testing.assert_allclose(out["test/two_stage/ndcg@3"],
                               np.mean(metrics_lib.ndcg_of_lists(two, relevant, 3)))
    # Memory bounded by the block of users scored against the catalog, not by every user:
    # the candidates of every user once (2 × 6 pairs), then one user's catalog at a time.
    asked = []

    def predict(c):
      asked.append(len(c["user_id"]))
      return {"click": click[c["user_id"], c["video_id"]]}
    enc.predict = predict
    with mock.patch.object(two_stage, "PAIRS_PER_CHUNK", n):
      blocked = ev.evaluate(enc, None)
    self.assertEqual(asked, [12, n, n])
    self.assertEqual(blocked.keys(), out.keys())
    for key, value in out.items():
      np.testing.assert_allclose(blocked[key], value, err_msg=key)
    # A reference on a sample of users: the ratio compares the two stages on those users only.
    ctx.run = types.SimpleNamespace(seed=0)
    one = two_stage.TwoStageEvaluator(ctx, splits=("test",), k=4, candidates=6, ndcg_k=3,
                                      reference_users=1).evaluate(enc, None)
    self.assertEqual(one["test/full_rank/users"], 1)
    self.assertEqual(one["test/two_stage/ndcg@3"], out["test/two_stage/ndcg@3"])  # every user
    per_user_full = metrics_lib.ndcg_of_lists(ranked, relevant, 3)
    per_user_two = metrics_lib.ndcg_of_lists(two, relevant, 3)
    u = [i for i in range(2) if np.isclose(one["test/full_rank/ndcg@3"], per_user_full[i])]
    self.assertNotEqual(u, [])
    if per_user_full[u[0]] > 0:
      self.assertAlmostEqual(one["test/two_stage/ndcg_ratio"],
                             per_user_two[u[0]] / per_user_full[u[0]])


class ConfigTest(absltest.TestCase):

  def test_user_item_needs_the_click_head(self):
    c = helpers.load_config("smoke")
    c.model.update(tasks=("user_item",), heads=("watch_time",))
    with self.assertRaisesRegex(ConfigError, "model.tasks.*'user_item'.*click"):
      validate.validate(c)


if __name__ == "__main__":
  absltest.main()
