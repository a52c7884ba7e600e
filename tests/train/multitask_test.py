"""Multi-task parts of the recommender: learned uncertainty loss weighting, the weighted-logistic
and log-scale watch-time heads, the content-type embedding and metrics per content type."""

import types

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx

from tests import helpers
from tests.train import fixtures
from vidrec_jax import run_spec
from vidrec_jax import validate
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.config_checks import check_needs
from vidrec_jax.data import pipeline
from vidrec_jax.eval.evaluators import ranking
from vidrec_jax.models import heads
from vidrec_jax.models import recommender
from vidrec_jax.models import two_tower
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps
from vidrec_jax.train.random_batch import random_batch
from vidrec_jax.train.state import Setup


def setup_of(config):
  config.mesh.shape = dict(data=1, fsdp=1, model=1)
  return Setup(run_spec.resolve(config), 20, 30, mesh_lib.make_mesh(config.mesh, jax.devices()[:1]))


class UncertaintyWeightingTest(absltest.TestCase):

  def test_total_is_the_kendall_form_of_each_loss(self):
    c = helpers.load_config("smoke")
    c.model.loss_weighting = "uncertainty"
    setup = setup_of(c)
    state = setup.init(0)
    params = jax.device_get(state.params)
    log_vars = {"click": 0.7, "watch_time": -0.4}
    for name, v in log_vars.items():
      params["loss_log_vars"][name] = np.float32(v)
    batch = random_batch(c, 20, 30, seed=1)
    total, per = steps.losses(setup, params, batch, jax.random.key(0), train=False)
    w = c.train.loss_weights
    expected = (w["click"] * (np.exp(-0.7) * per["click"] + 0.35)
                + w["watch_time"] * (0.5 * np.exp(0.4) * per["watch_time"] - 0.2))
    np.testing.assert_allclose(float(total), float(expected), rtol=1e-5)
    # The log-variances get gradients: they are learned.
    grads = jax.grad(lambda p: steps.losses(setup, p, batch, jax.random.key(0), False)[0])(params)
    self.assertTrue(all(abs(float(grads["loss_log_vars"][n])) > 0 for n in log_vars))

  def test_fixed_has_no_log_variances(self):
    setup = setup_of(helpers.load_config("smoke"))
    self.assertNotIn("loss_log_vars", jax.device_get(setup.init(0).params))

  def test_bad_weighting_is_named(self):
    c = helpers.load_config("smoke")
    c.model.loss_weighting = "gradnorm"
    with self.assertRaisesRegex(ConfigError, "model.loss_weighting.*allowed: fixed, uncertainty"):
      validate.validate(c)


class WatchTimeLogisticTest(absltest.TestCase):

  def test_loss_by_hand_and_odds_as_prediction(self):
    raw = jnp.asarray([[0.3, -1.2, 2.0]])
    batch = {"click": jnp.asarray([[1.0, 0.0, 1.0]]),
             "watch_time": jnp.asarray([[12.0, 0.0, 3.5]])}
    loss = np.asarray(heads.WatchTimeLogisticHead.loss(raw, {}, batch))
    sig = 1 / (1 + np.exp(-np.asarray(raw)))
    expected = [[-12.0 * np.log(sig[0, 0]), -np.log(1 - sig[0, 1]), -3.5 * np.log(sig[0, 2])]]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(heads.WatchTimeLogisticHead.predict(raw), np.exp(raw), rtol=1e-6)

  def test_one_watch_time_head(self):
    c = helpers.load_config("smoke")
    c.model.heads = ("click", "watch_time", "watch_time_logistic")
    with self.assertRaisesRegex(ConfigError, "at most one head of the 'watch_time' group"):
      validate.validate(c)

  def test_trains_a_step(self):
    c = helpers.load_config("smoke")
    c.model.heads = ("click", "watch_time_logistic")
    setup = setup_of(c)
    state = setup.init(0)
    for seed in (1, 2):
      state, m = jax.jit(lambda s, b: steps.train_step(setup, s, b))(
          state, random_batch(c, 20, 30, seed=seed))
    self.assertTrue(np.isfinite(float(m["loss/watch_time_logistic"])))


class WatchTimeLogTest(absltest.TestCase):

  def test_loss_on_the_log_scale_by_hand_and_seconds_as_prediction(self):
    raw = jnp.asarray([[0.3, 1.2, 2.0]])
    batch = {"watch_time": jnp.asarray([[0.0, 2.0, 5.5]])}
    loss = np.asarray(heads.WatchTimeLogHead.loss(raw, {}, batch))
    np.testing.assert_allclose(loss, [[0.09, (1.2 - np.log(3.0)) ** 2, (2.0 - np.log(6.5)) ** 2]],
                               rtol=1e-5)
    np.testing.assert_allclose(heads.WatchTimeLogHead.predict(jnp.log1p(jnp.asarray(4.0))), 4.0,
                               rtol=1e-6)
    # Twice the seconds at any length costs the same: a long video does not outweigh a short.
    for w in (50.0, 1.0):
      loss = heads.WatchTimeLogHead.loss(jnp.log1p(jnp.asarray(2 * w + 1.0)), {},
                                         {"watch_time": jnp.asarray(w)})
      self.assertAlmostEqual(float(loss), np.log(2.0) ** 2, places=5)

  def test_one_watch_time_head_and_trains_given_a_click(self):
    c = helpers.load_config("smoke")
    c.model.heads = ("click", "watch_time", "watch_time_log")
    with self.assertRaisesRegex(ConfigError, "at most one head of the 'watch_time' group"):
      validate.validate(c)
    c.model.heads = ("click", "watch_time_log")
    c.model.given_click = ("watch_time_log",)
    validate.validate(c)
    setup = setup_of(c)
    state = setup.init(0)
    for seed in (1, 2):
      state, m = jax.jit(lambda s, b: steps.train_step(setup, s, b))(
          state, random_batch(c, 20, 30, seed=seed))
    self.assertTrue(np.isfinite(float(m["loss/watch_time_log"])))
    u = jax.random.normal(jax.random.key(1), (5, c.model.embed_dim))
    i = jax.random.normal(jax.random.key(2), (5, c.model.embed_dim))
    raw = setup.model(state.params).score(u, i)
    pred = steps.eval_step(setup, state.params, u, i)
    np.testing.assert_allclose(
        pred["watch_time_log"], jax.nn.sigmoid(raw["click"]) * jnp.expm1(raw["watch_time_log"]),
        rtol=1e-5)


class ContentTypeTest(absltest.TestCase):

  def test_video_inputs_give_each_video_its_type_row(self):
    inputs = pipeline.VideoInputs(None, np.asarray([2, 0, 1], np.int32))
    self.assertEqual(int(inputs(1)["content_type"]), 0)
    self.assertEqual(set(inputs(2)), {"content_type"})

  def test_item_vector_depends_on_the_content_type(self):
    c = helpers.load_config("smoke")
    c.model.content_types = ("movie", "series", "news")
    model = recommender.build(c.model, 20, 30, nnx.Rngs(0))
    batch = random_batch(c, 20, 30, seed=0)
    clip = {k: jnp.asarray(batch[k]) for k in recommender.input_spec(c.model).item_keys}
    a, _ = model.encode_items(clip, jnp.asarray(batch["video"]))
    clip["content_type"] = (clip["content_type"] + 1) % 4
    b, _ = model.encode_items(clip, jnp.asarray(batch["video"]))
    self.assertGreater(float(jnp.abs(a - b).min(axis=-1).max()), 1e-4)

  def test_duplicate_types_are_refused(self):
    c = helpers.load_config("smoke")
    c.model.content_types = ("movie", "movie")
    with self.assertRaisesRegex(ConfigError, "model.content_types"):
      validate.validate(c)

  def test_metrics_per_content_type_split_the_impressions(self):
    # Six impressions of four videos: movie (video 0, cold), news (1, 2), movie (3); the rows
    # of movies are 0, 3 and 4, those of news 1, 2 and 5.
    cols = {"user_id": np.asarray([0, 0, 1, 1, 2, 2]), "video_id": np.asarray([0, 1, 2, 3, 0, 1]),
            "click": np.asarray([1, 0, 0, 1, 0, 1], np.float32)}
    catalog = types.SimpleNamespace(cold=np.asarray([True, False, False, False]),
                                    content_type=np.asarray(["movie", "news", "news", "movie"]),
                                    filename=np.asarray(["a", "b", "c", "d"]))
    dataset = types.SimpleNamespace(
        catalog=catalog, label_columns=("click",), splits=("test",),
        split=lambda s: types.SimpleNamespace(columns=cols), has=lambda name: False)
    ctx = types.SimpleNamespace(dataset=dataset, run=types.SimpleNamespace(
        model=types.SimpleNamespace(heads=("click",))))
    pred = np.asarray([0.9, 0.2, 0.3, 0.8, 0.4, 0.1])
    enc = types.SimpleNamespace(decodable=np.ones(4, bool),
                                predict=lambda c: {"click": pred})
    out = ranking.RankingEvaluator(ctx, splits=("test",), ndcg_k=10).evaluate(enc, None)
    self.assertEqual(out["test/type_movie/all/count"], 3)
    self.assertEqual(out["test/type_news/all/count"], 3)
    self.assertEqual(out["test/type_movie/cold/count"], 2)
    self.assertEqual(out["test/type_news/cold/count"], 0)
    # Movie rows (0, 3, 4): clicks 1, 1, 0 with scores 0.9, 0.8, 0.4 -> AUC 1.
    self.assertEqual(out["test/type_movie/all/auc"], 1.0)
    # News rows (1, 2, 5): clicks 0, 0, 1 with scores 0.2, 0.3, 0.1 -> AUC 0.
    self.assertEqual(out["test/type_news/all/auc"], 0.0)


class GivenClickTest(absltest.TestCase):
  """model.given_click: watch time and like learned on clicked impressions only, predicted as
  P(click) times the conditional prediction."""

  def config(self):
    c = helpers.load_config("smoke")
    c.model.heads = ("click", "watch_time", "like")
    c.model.given_click = ("watch_time", "like")
    return c

  def test_loss_counts_clicked_impressions_only(self):
    c = self.config()
    setup = setup_of(c)
    model = setup.model(setup.init(0).params)
    batch = {k: jnp.asarray(v) for k, v in random_batch(c, 20, 30, seed=3).items()}
    out, _ = model(batch)
    clicked = np.asarray(batch["click"]) > 0
    for name in ("watch_time", "like"):
      full = np.asarray(model.heads[name].loss(out[name], out, batch))
      got = np.asarray(model.head_loss(name, out, batch))
      np.testing.assert_allclose(got[clicked], full[clicked], rtol=1e-6)
      self.assertTrue(np.all(got[~clicked] == 0), name)
      self.assertGreater(float(np.abs(full[~clicked]).max()), 0.0)
    # The click head is unconditional.
    np.testing.assert_allclose(model.head_loss("click", out, batch),
                               model.heads["click"].loss(out["click"], out, batch))

  def test_no_clicks_no_gradient_for_the_conditional_heads(self):
    c = self.config()
    setup = setup_of(c)
    params = setup.init(0).params
    batch = random_batch(c, 20, 30, seed=4)
    batch["click"] = np.zeros_like(batch["click"])
    grads = jax.grad(lambda p: steps.losses(setup, p, batch, jax.random.key(0), False)[0])(
        params)
    for name in ("watch_time", "like"):
      norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["heads"][name]))
      self.assertEqual(norm, 0.0, name)
    self.assertGreater(sum(float(jnp.abs(g).sum())
                           for g in jax.tree.leaves(grads["heads"]["click"])), 0.0)

  def test_prediction_is_click_probability_times_the_conditional_one(self):
    c = self.config()
    setup = setup_of(c)
    model = setup.model(setup.init(0).params)
    u = jax.random.normal(jax.random.key(1), (5, c.model.embed_dim))
    i = jax.random.normal(jax.random.key(2), (5, c.model.embed_dim))
    raw = model.score(u, i)
    pred = steps.eval_step(setup, setup.init(0).params, u, i)
    p_click = jax.nn.sigmoid(raw["click"])
    np.testing.assert_allclose(pred["click"], p_click, rtol=1e-6)
    np.testing.assert_allclose(pred["like"], p_click * jax.nn.sigmoid(raw["like"]), rtol=1e-6)
    np.testing.assert_allclose(pred["watch_time"], p_click * raw["watch_time"], rtol=1e-6)

  def test_bad_given_click_is_named(self):
    for heads_, given in ((("click", "watch_time_logistic"), ("watch_time_logistic",)),
                          (("watch_time", "like"), ("like",)),
                          (("click", "like"), ("watch_time",))):
      c = helpers.load_config("smoke")
      c.model.heads = heads_
      c.model.given_click = given
      with self.assertRaisesRegex(ConfigError,
                                  "model.given_click.*among like, watch_time, watch_time_log"):
        validate.validate(c)


class SharedAffinityTest(absltest.TestCase):

  def test_each_head_adds_its_multiple_of_the_scaled_dot_product(self):
    c = helpers.load_config("smoke")
    c.model.heads = ("click", "watch_time", "like")
    plain = recommender.build(c.model, 20, 30, nnx.Rngs(0))
    c.model.shared_affinity = True
    model = recommender.build(c.model, 20, 30, nnx.Rngs(0))
    d = c.model.embed_dim
    u = jax.random.normal(jax.random.key(1), (6, d))
    i = jax.random.normal(jax.random.key(2), (6, d))
    # The multiples start at zero: the model starts where the one without the term does.
    for name, value in plain.score(u, i).items():
      np.testing.assert_allclose(model.score(u, i)[name], value, rtol=1e-6)
    scales = {"click": 0.5, "watch_time": -1.5, "like": 2.0}
    for name, v in scales.items():
      model.affinity_scale[name][...] = jnp.float32(v)
    a = np.asarray(jnp.sum(u * i, -1)) / np.sqrt(d)
    h, _ = model.trunk(jnp.concatenate([u, i, u * i], axis=-1))
    got = model.score(u, i)
    for name, v in scales.items():
      inner = np.asarray(model.heads[name].out(h[name])[..., 0]) + v * a
      want = np.log1p(np.exp(inner)) if name == "watch_time" else inner
      np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6)

  def test_the_multiples_are_learned(self):
    c = helpers.load_config("smoke")
    c.model.shared_affinity = True
    setup = setup_of(c)
    params = setup.init(0).params
    grads = jax.grad(lambda p: steps.losses(setup, p, random_batch(c, 20, 30, seed=5),
                                            jax.random.key(0), False)[0])(params)
    for name in c.model.heads:
      self.assertNotEqual(float(grads["affinity_scale"][name]), 0.0, name)


class ItemDurationTest(absltest.TestCase):

  def test_video_inputs_carry_the_duration(self):
    inputs = pipeline.VideoInputs(None, None, np.asarray([1.5, 4.0], np.float32))
    self.assertEqual(float(inputs(1)["duration"]), 4.0)
    self.assertEqual(set(inputs(0)), {"duration"})

  def test_item_vector_depends_on_the_duration(self):
    c = helpers.load_config("smoke")
    c.model.item_duration = True
    model = recommender.build(c.model, 20, 30, nnx.Rngs(0))
    batch = random_batch(c, 20, 30, seed=0)
    clip = {k: jnp.asarray(batch[k]) for k in recommender.input_spec(c.model).item_keys}
    self.assertIn("duration", clip)
    longer = dict(clip, duration=clip["duration"] * 3.0)
    a, _ = model.encode_items(clip, jnp.asarray(batch["video"]))
    b, _ = model.encode_items(longer, jnp.asarray(batch["video"]))
    # The duration MLP starts at zero: at initialisation the length changes nothing ...
    np.testing.assert_array_equal(a, b)
    # ... and once its last layer has learned something, the item vector follows the length.
    last = model.duration_proj.layers[-1].kernel
    last[...] = jax.random.normal(jax.random.key(3), last[...].shape)
    a, _ = model.encode_items(clip, jnp.asarray(batch["video"]))
    b, _ = model.encode_items(longer, jnp.asarray(batch["video"]))
    self.assertGreater(float(jnp.abs(a - b).min(axis=-1).max()), 1e-4)

  def test_a_dataset_without_durations_is_refused(self):
    c = helpers.load_config("smoke")
    c.model.item_duration = True
    validate.validate(c)  # the synthetic world knows its durations
    source = types.SimpleNamespace(label_columns=("click", "watch_time"), durations=False)
    with self.assertRaisesRegex(ConfigError, "model.item_duration.*does not know.*synthetic"):
      check_needs(c, two_tower.TwoTowerRecommender.needs(c.model, source))


class MultitaskMeshTest(absltest.TestCase):
  """configs/multitask.py (trunk, uncertainty weighting, user_item retrieval, content types)
  trains with parameters and batch sharded over 8 devices; every trunk parameter learns."""

  def test_one_step_per_trunk_on_eight_devices(self):
    for trunk in ("mmoe", "ple"):
      config = helpers.load_config(f"smoke,{trunk}", "multitask.py")
      validate.validate(config)
      # The first step's learning rate is 0 (warm-up).
      before, after, metrics = fixtures.train_on_eight_devices(config, (1, 2))
      self.assertTrue(np.isfinite(float(metrics["loss/user_item"])), trunk)
      changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)),
                                             before["trunk"], after["trunk"]))
      self.assertTrue(all(changed), f"every {trunk} parameter gets a gradient")
      self.assertTrue(np.any(before["loss_log_vars"]["like"] != after["loss_log_vars"]["like"]))


if __name__ == "__main__":
  absltest.main()
