"""Watch histories on the synthetic world: each impression's history is its user's earlier clicks;
the sasrec and din user towers train and evaluate through the real loop; din's user vector
depends on the candidate, sasrec's does not."""

import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx

from tests import helpers
from vidrec_jax import experiment
from vidrec_jax import run_spec
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.data import sequences
from vidrec_jax.models.user_towers import SASRecTower
from vidrec_jax.train.context import make_context
from vidrec_jax.train.trainers import TRAINERS


def _config(tower):
  c = helpers.load_config(f"smoke,{tower}")
  c.data.data_dir = helpers.smoke_world_dir()
  c.data.history.update(max_len=6, stride=3)
  if tower == "sasrec":
    c.model.user_tower.max_len = 6
  return c


class ClickHistoryTest(absltest.TestCase):

  def test_history_is_the_users_clicks_strictly_before(self):
    users = np.array([1, 1, 2, 1, 1, 2])
    videos = np.array([10, 11, 20, 12, 13, 21])
    times = np.array([5.0, 1.0, 3.0, 9.0, 5.0, 7.0])
    h = sequences.ClickHistory(users, videos, times)
    hist, mask = h(np.array([1, 1, 2, 3]), np.array([5.0, 10.0, 7.0, 4.0]), 3)
    np.testing.assert_array_equal(hist, [[11, -1, -1], [10, 13, 12], [20, -1, -1],
                                         [-1, -1, -1]])
    np.testing.assert_array_equal(mask.sum(1), [1, 3, 1, 0])

  def test_training_batches_carry_each_impressions_history(self):
    config = _config("sasrec")
    ctx = make_context(run_spec.resolve(config), tempfile.mkdtemp(), prepare=False)
    batch = next(TRAINERS.get("supervised")(ctx).batches(0, None))
    b, m = batch["user"].shape
    self.assertEqual(batch["history"].shape, (b, m, 6))
    cols = [ctx.dataset.split(s).columns for s in ctx.dataset.splits]
    clicks = {k: np.concatenate([c[k][c["click"] > 0] for c in cols])
              for k in ("user_id", "video_id", "timestamp")}
    train = ctx.dataset.split("train").columns
    checked = 0
    for i in range(b):
      for j in range(m):
        if batch["weight"][i, j] == 0:
          continue
        u = _raw_user(ctx, batch["user"][i, j])
        rows = np.flatnonzero((train["user_id"] == u) & (train["video_id"] == batch["video_id"][i]))
        got = list(batch["history"][i, j][batch["history_mask"][i, j] > 0])
        wants = []  # one per logged impression of this (user, video): the batch holds one of them
        for t in train["timestamp"][rows]:
          sel = (clicks["user_id"] == u) & (clicks["timestamp"] < t)
          wants.append(list(clicks["video_id"][sel][np.argsort(clicks["timestamp"][sel],
                                                               kind="stable")][-6:]))
        self.assertIn(got, wants)
        checked += 1
    self.assertGreater(checked, 5)


def _raw_user(ctx, row):
  return int(np.flatnonzero(ctx.user_vocab.table == row)[0])


class TowersTest(absltest.TestCase):

  def test_sasrec_and_din_train_and_evaluate(self):
    for tower in ("sasrec", "din"):
      m = experiment.train(_config(tower), tempfile.mkdtemp())
      for key in ("test/cold/auc", "test/all/logloss", "valid/all/gauc"):
        self.assertIn(key, m, tower)

  def test_with_the_user_item_task_users_without_history_train(self):
    # The demo's default model with a history tower: a user with no click yet has a zero user
    # vector, whose L2 normalisation in the user_item task once made every gradient NaN.
    for tower in ("sasrec", "din"):
      c = _config(tower)
      c.model.tasks = ("user_item",)
      m = experiment.train(c, tempfile.mkdtemp())
      self.assertTrue(np.isfinite(m["test/all/auc"]), tower)

  def test_only_din_depends_on_the_candidate(self):
    for tower, depends in (("sasrec", False), ("din", True)):
      ctx = make_context(run_spec.resolve(_config(tower)), tempfile.mkdtemp(), prepare=False)
      model = ctx.setup.model(ctx.setup.init(0).params)
      hist = np.array([[1, 2, 3, -1, -1, -1]])
      inputs = {"history": hist, "history_mask": (hist >= 0).astype(np.float32),
                "user": np.zeros(1, np.int32)}
      c = jax.random.normal(jax.random.PRNGKey(0), (2, 1, model.video_embed.embedding.shape[1]))
      a = model.encode_users(inputs, ctx.catalog, candidate=c[0])
      b = model.encode_users(inputs, ctx.catalog, candidate=c[1])
      self.assertEqual(bool(float(jnp.abs(a - b).max()) > 1e-5), depends, tower)

  def test_sasrec_kernel_init(self):
    # N(0, 0.02) (SASRec's / RecBole's) or LeCun normal (std 1/sqrt(fan_in) = 1/8 at 64 wide).
    kw = dict(num_users=1, dim=64, vocab_pad_multiple=1, max_len=8, num_layers=1, num_heads=2,
              inner_dim=256, dropout_rate=0.0, dtype=jnp.float32, param_dtype=jnp.float32)
    stds = {}
    for init in ("lecun_normal", "normal_0.02"):
      tower = SASRecTower(**kw, rngs=nnx.Rngs(0), kernel_init=init)
      stds[init] = float(np.std(np.asarray(tower.blocks[0].inner.kernel[...])))
    self.assertAlmostEqual(stds["normal_0.02"], 0.02, delta=0.002)
    self.assertAlmostEqual(stds["lecun_normal"], 0.125, delta=0.015)
    with self.assertRaisesRegex(ConfigError, "kernel_init='xavier' is not allowed; allowed: "
                                "lecun_normal, normal_0.02"):
      SASRecTower(**kw, rngs=nnx.Rngs(0), kernel_init="xavier")


if __name__ == "__main__":
  absltest.main()
