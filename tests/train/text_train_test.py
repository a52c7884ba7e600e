"""The text tower in training: pretrained MiniLM weights arrive in the model, top_layers trains
only the last layers, titles reach cold-start item vectors, the retrieval losses learn, and the
whole run reports text->video and visual-query retrieval metrics."""

import functools
import json
import os
import tempfile

import jax
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.main_test import run_main
from tests.train import fixtures
from vidrec_jax.checkpoints import convert
from vidrec_jax.models import recommender
from vidrec_jax.models import text_tower
from vidrec_jax.models import text
from vidrec_jax.train import steps

PREFIX = text_tower.TEXT_PREFIX


def _config(mode="frozen", item_tower=True, tasks=("text_match", "visual_query")):
  c = helpers.load_config("smoke,text")
  c.model.text.update(train_mode=mode, item_tower=item_tower, max_length=8)
  c.model.tasks = tasks
  return c


def _batch(config, seed=0):
  """A fake batch with title inputs and a second (query) view of every clip."""
  b = fixtures.fake_batch(config, seed=seed)
  rng = np.random.default_rng(seed + 100)
  n, length = len(b["video"]), config.model.text.max_length
  b["video"] = np.arange(n, dtype=np.int32) % (fixtures.NUM_VIDEOS + 1)
  b["title_group"] = np.arange(n, dtype=np.int32)
  if config.model.text.train_mode == "frozen":
    emb = rng.normal(size=(n, 384)).astype(np.float32)
    b["title_emb"] = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  else:
    b["title_ids"] = rng.integers(1000, 5000, (n, length)).astype(np.int32)
    b["title_mask"] = (np.arange(length)[None] < rng.integers(3, length + 1, (n, 1))).astype(
        np.int32)
  for k in recommender.input_spec(config.model).clip + ("valid",):
    b[f"query_{k}"] = b[k]
  b["query_frames"] = b["frames"] + 0.1 * rng.normal(size=b["frames"].shape).astype(np.float32)
  return b


class TextTrainingTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    helpers.require_text_model()

  def test_top_layers_loads_pretrained_weights_and_trains_only_the_last_layers(self):
    config = _config("top_layers")
    setup = fixtures.setup_on(jax.devices()[:2], (2, 1, 1), config)
    state = setup.init(0)
    before = convert.flat_params(jax.device_get(state.params))
    pretrained = text.converted_params("all-MiniLM-L6-v2")
    keys = [k for k in before if k.startswith(PREFIX)]
    self.assertLen(keys, len(pretrained))
    for k in keys:
      np.testing.assert_array_equal(before[k], pretrained[k[len(PREFIX):]], err_msg=k)
    step = jax.jit(functools.partial(steps.train_step, setup))
    for i in range(2):
      state, _ = step(state, _batch(config, i))
    after = convert.flat_params(jax.device_get(state.params))
    labels = convert.flat_params(setup.labels)
    for k in keys:
      top = k.startswith(PREFIX + "layers/4/") or k.startswith(PREFIX + "layers/5/")
      self.assertEqual(labels[k], "text" if top else "frozen", k)
      if not top:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    moved = [k for k in keys if not np.array_equal(after[k], before[k])]
    self.assertNotEmpty(moved)
    self.assertTrue(all("/layers/4/" in k or "/layers/5/" in k for k in moved))

  def test_titles_reach_the_item_vector_of_a_cold_video(self):
    for item_tower in (True, False):
      config = _config(item_tower=item_tower, tasks=("text_match",))
      setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), config)
      params = setup.init(0).params
      b = _batch(config)
      b["video"] = np.full_like(b["video"], fixtures.NUM_VIDEOS)  # every video out of vocab
      other = dict(b, title_emb=np.roll(b["title_emb"], 1, axis=0))
      a, _ = steps.encode_items_step(setup, params, b)
      c, _ = steps.encode_items_step(setup, params, other)
      if item_tower:
        self.assertGreater(float(np.abs(np.asarray(a) - np.asarray(c)).max()), 1e-3)
      else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), atol=1e-6)

  def test_retrieval_losses_learn(self):
    config = _config()
    config.train.steps = 25  # the learning-rate schedule spans the test's steps
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), config)
    state = setup.init(0)
    step = jax.jit(functools.partial(steps.train_step, setup))
    batch = _batch(config)
    history = []
    for _ in range(25):
      state, m = step(state, batch)
      history.append({k: float(m[f"loss/{k}"]) for k in ("text_match", "visual_query")})
    for task in ("text_match", "visual_query"):
      self.assertLess(history[-1][task], 0.6 * history[0][task], task)

  def test_a_run_reports_retrieval_metrics(self):
    workdir = tempfile.mkdtemp()
    r = run_main(f"--config={os.path.join(helpers.REPO, 'configs', 'demo.py')}:smoke,text",
                 f"--workdir={workdir}", f"--config.data.data_dir={helpers.smoke_world_dir()}")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
      metrics = json.load(f)
    for key in ("text_match/cold/recall@1", "text_match/cold/recall@10", "text_match/cold/mrr",
                "visual_query/all/recall@5", "visual_query/cold/mrr"):
      self.assertBetween(metrics[key], 0.0, 1.0)
    self.assertGreater(metrics["text_match/cold/count"], 0)
    self.assertIn("task/queries", r.stdout)
    self.assertTrue(os.path.exists(os.path.join(workdir, "text_features", "meta.json")))


if __name__ == "__main__":
  absltest.main()
