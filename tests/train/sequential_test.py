"""Next-item recommendation: training windows, the SASRec tower's masks, the full and sampled
softmax against numpy references, full-sort ranks with ties, and MovieLens end to end through
the real entry point (metrics written, a resumed run continues the same batches)."""

import functools
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.main_test import run_main
from tests.train import fixtures
from vidrec_jax import validate
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.data import sequences
from vidrec_jax.eval.evaluators import full_sort
from vidrec_jax.models import partitioning
from vidrec_jax.models import sequential
from vidrec_jax.train import steps

CONFIG = os.path.join(helpers.REPO, "configs", "movielens.py")
NUM_VIDEOS = 9  # catalog ids 0..8; ids 6..8 share one ID row (as out-of-vocabulary items do)


def _config():
  c = helpers.load_config("smoke", "movielens.py")
  c.model.user_tower.update(dropout_rate=0.0)
  return c


def _catalog():
  row = np.minimum(np.arange(NUM_VIDEOS), 6).astype(np.int32)
  counts = np.array([5, 1, 3, 2, 8, 1, 0, 0, 0], np.float64)
  return {sequential.ROW: row, "log_q": np.log((counts + 1) / (counts.sum() + NUM_VIDEOS))
          .astype(np.float32), "cold": np.arange(NUM_VIDEOS) >= 7}  # 7, 8: published later


def _setup(config=None):
  return fixtures.setup_on(jax.devices()[:1], (1, 1, 1), config or _config())


class WindowsTest(absltest.TestCase):

  def test_every_target_once_with_context(self):
    seqs = {0: np.arange(30), 1: np.array([4, 5]), 2: np.array([7])}
    w = sequences.training_windows(seqs, max_len=8, stride=3)
    self.assertEqual(w.num_targets, 29 + 1)
    trained = [(int(u), int(t), int((w.inputs[i, :p + 1] != sequences.PAD).sum()))
               for i, u in enumerate(w.users) for p, t in enumerate(w.targets[i])
               if w.loss[i, p]]
    self.assertEqual(sorted(t for u, t, _ in trained if u == 0), list(range(1, 30)))
    # a target past the first window sees at least max_len - stride earlier items
    self.assertTrue(all(c >= 5 for u, t, c in trained if u == 0 and t > 8))
    # the input before each target is the item right before it in the user's sequence
    for i, p in zip(*np.nonzero(w.loss)):
      self.assertEqual(w.targets[i, p], seqs[w.users[i]][list(seqs[w.users[i]]).index(
          w.inputs[i, p]) + 1])

  def test_batches_are_a_pure_function_of_the_index(self):
    w = sequences.training_windows({u: np.arange(u, u + 12) for u in range(9)}, 4, 2)
    a = sequences.batch(w, 7, 5, seed=3)
    b = sequences.batch(w, 7, 5, seed=3)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
    self.assertFalse(np.array_equal(a["history"], sequences.batch(w, 8, 5, seed=3)["history"]))


class TowerTest(absltest.TestCase):

  def test_padding_changes_nothing_and_the_future_is_hidden(self):
    setup = _setup()
    model = setup.model(setup.init(0).params)
    cat = jax.tree.map(jnp.asarray, _catalog())
    hist = np.array([[1, 2, 3, 4, -1, -1], [5, 0, -1, -1, -1, -1]])
    inputs = {"history": hist, "history_mask": (hist >= 0).astype(np.float32)}
    states = model.user_states(inputs, cat, all_positions=True)
    junk = dict(inputs, history=np.where(hist >= 0, hist, 7))  # garbage where padded
    np.testing.assert_allclose(model.user_states(junk, cat, all_positions=True), states,
                               atol=1e-6)
    later = dict(inputs, history=np.array([[1, 2, 8, 0, -1, -1], [5, 0, -1, -1, -1, -1]]))
    changed = model.user_states(later, cat, all_positions=True)
    np.testing.assert_allclose(changed[0, :2], states[0, :2], atol=1e-6)  # causal
    self.assertGreater(float(jnp.abs(changed[0, 2] - states[0, 2]).max()), 1e-4)
    np.testing.assert_allclose(model.user_states(inputs, cat)[0], states[0, 3], atol=1e-6)


class LossAndRanksTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.setup = _setup()
    self.params = self.setup.init(1).params
    self.model = self.setup.model(self.params)
    self.cat = jax.tree.map(jnp.asarray, _catalog())
    hist = np.array([[1, 2, 4, -1], [3, 0, -1, -1], [2, 2, 5, 1]])
    self.batch = {"history": hist, "history_mask": (hist >= 0).astype(np.float32),
                  "targets": np.array([[2, 4, 0, -1], [0, 4, -1, -1], [2, 5, 1, 3]]),
                  "loss_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 1, 1]], np.float32)}

  def _reference(self, softmax, mask_history=False):
    states = np.asarray(self.model.user_states(self.batch, self.cat, all_positions=True))
    items = np.asarray(self.model.all_items(self.cat), np.float64)
    pairs = [(b, p) for b, p in zip(*np.nonzero(self.batch["loss_mask"]))]
    losses = []
    for b, p in pairs:
      t = self.batch["targets"][b, p]
      if softmax == "full":  # over the items published in the training period
        logits = items[:7] @ states[b, p]
        losses.append(np.log(np.exp(logits).sum()) - logits[t])
      else:  # the other trained targets are negatives; logQ-corrected; repeats masked
        cands = [self.batch["targets"][bb, pp] for bb, pp in pairs]
        logits = [items[c] @ states[b, p] - float(self.cat["log_q"][c]) for c in cands]
        keep = [j for j, c in enumerate(cands) if pairs[j] == (b, p) or c != t]
        if mask_history:  # the window's items up to this position are no negatives
          seen = set(self.batch["history"][b, :p + 1].tolist())
          keep = [j for j in keep if pairs[j] == (b, p) or cands[j] not in seen]
        own = pairs.index((b, p))
        row = np.array([logits[j] for j in keep])
        losses.append(np.log(np.exp(row).sum()) - logits[own])
    return float(np.mean(losses))

  def test_losses_match_numpy(self):
    for softmax in ("full", "sampled"):
      got, _ = steps.next_item_losses(self.setup, self.params, self.batch, self.cat, None,
                                      softmax)
      self.assertAlmostEqual(float(got), self._reference(softmax), places=4, msg=softmax)
    masked, _ = steps.next_item_losses(self.setup, self.params, self.batch, self.cat, None,
                                       "sampled", mask_history=True)
    self.assertAlmostEqual(float(masked), self._reference("sampled", True), places=4)
    # The fixture's windows hold in-batch targets in their histories: masking changes the loss.
    self.assertNotAlmostEqual(float(masked), self._reference("sampled"), places=4)

  def test_history_masking_needs_the_in_batch_softmax(self):
    config = helpers.load_config("smoke", "movielens.py")
    config.train.trainer_args = dict(mask_history=True)
    config.train.softmax = "full"
    with self.assertRaisesRegex(ConfigError, "mask_history=True .*needs train.softmax='sampled'"):
      validate.validate(config)
    config.train.softmax = "sampled"
    validate.validate(config)
    config.train.trainer_args = dict(mask_history="yes")
    with self.assertRaisesRegex(ConfigError, "mask_history='yes'"):
      validate.validate(config)

  def test_id_dropout_sends_a_share_of_the_items_to_the_oov_row(self):
    config = _config()
    config.model.id_dropout = 0.5
    model = _setup(config).model(self.params)
    row = np.asarray(model.dropped_ids(self.cat, jax.random.PRNGKey(0))[sequential.ROW])
    oov = model.num_videos
    self.assertTrue(0 < (row == oov).sum() < NUM_VIDEOS)
    kept = row != oov
    np.testing.assert_array_equal(row[kept], np.asarray(self.cat[sequential.ROW])[kept])
    self.assertIs(model.dropped_ids(self.cat, None), self.cat)

  def test_full_sort_ranks_with_ties(self):
    # Items 6, 7, 8 share an ID row and have no content: equal scores, a three-way tie.
    q = {"history": self.batch["history"], "history_mask": self.batch["history_mask"],
         "target": np.array([7, 2, 0])}
    ranks, masked = map(np.asarray, steps.full_sort_ranks(self.setup, self.params, q, self.cat))
    users = np.asarray(self.model.user_states(q, self.cat))
    scores = users @ np.asarray(self.model.all_items(self.cat)).T
    want = [(scores[i] >= scores[i, t]).sum() for i, t in enumerate(q["target"])]
    np.testing.assert_array_equal(ranks, want)
    self.assertGreaterEqual(ranks[0], 3)  # the tie counts against the target
    # Masked (MicroLens): the history's items other than the target are not candidates.
    want_masked = []
    for i, t in enumerate(q["target"]):
      seen = {int(h) for h, m in zip(q["history"][i], q["history_mask"][i]) if m > 0} - {int(t)}
      keep = np.array([j not in seen for j in range(scores.shape[1])])
      want_masked.append((scores[i][keep] >= scores[i, t]).sum())
    np.testing.assert_array_equal(masked, want_masked)
    self.assertTrue((masked <= ranks).all())
    self.assertTrue((masked < ranks).any())  # some history item scored above a target
    # The same ranks with the catalog sharded over a (2, 2, 2) mesh of 8 devices.
    mesh8 = fixtures.setup_on(jax.devices()[:8], (2, 2, 2), _config())
    params8 = fixtures.put(self.params, mesh8.param_shardings)
    with partitioning.activation_sharding(mesh8.mesh, mesh8.rules):
      ranks8, masked8 = jax.jit(functools.partial(steps.full_sort_ranks, mesh8))(
          params8, q, self.cat)
    np.testing.assert_array_equal(np.asarray(ranks8), ranks)
    np.testing.assert_array_equal(np.asarray(masked8), masked)
    m = full_sort.rank_metrics(np.array([1, 3, 11]), (10,), "test")
    self.assertAlmostEqual(m["test/hr@10"], 2 / 3)
    self.assertAlmostEqual(m["test/ndcg@10"], (1 + 1 / np.log2(4)) / 3)
    self.assertAlmostEqual(m["test/mrr@10"], (1 + 1 / 3) / 3)


class MovieLensEndToEndTest(absltest.TestCase):

  def test_train_writes_full_sort_metrics_and_resumes_on_the_same_batches(self):
    from vidrec_jax.data.datasets import movielens  # pylint: disable=g-import-not-at-top
    try:
      movielens.folder("")
    except FileNotFoundError as e:
      self.skipTest(str(e))
    data = os.path.join(tempfile.mkdtemp(), "ml")
    common = [f"--config={CONFIG}:smoke", f"--config.data.data_dir={data}"]
    r = run_main(*common, f"--workdir={tempfile.mkdtemp()}", "--mode=generate")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    full, split = tempfile.mkdtemp(), tempfile.mkdtemp()
    r = run_main(*common, f"--workdir={full}")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(full, "eval", "metrics.json")) as f:
      m = json.load(f)
    for key in ("test/hr@10", "test/ndcg@10", "test/mrr@10", "test/hr@20", "valid/ndcg@10"):
      self.assertBetween(m[key], 0.0, 1.0)
    self.assertGreater(m["train/samples_per_second"], 0)
    # The same command again, from an empty workdir: the same numbers (timings aside).
    again = tempfile.mkdtemp()
    r = run_main(*common, f"--workdir={again}")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(again, "eval", "metrics.json")) as f:
      m2 = json.load(f)
    untimed = sorted(k for k in m if "second" not in k)
    self.assertEqual({k: m2[k] for k in untimed}, {k: m[k] for k in untimed})
    for steps_ in ("3", "6"):
      r = run_main(*common, f"--workdir={split}", f"--config.train.steps={steps_}")
      self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("restored checkpoint at step 3", r.stderr)
    a, b = _params(full, 6), _params(split, 6)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class VideoFolderEndToEndTest(absltest.TestCase):

  def test_a_folder_with_a_broken_video_trains_on_content_and_reports_it(self):
    helpers.require_pretrained("efficientnet_lite0")
    helpers.require_text_model()
    root = tempfile.mkdtemp()
    helpers.make_video_folder(root)
    with open(os.path.join(root, "videos", "bikes05.mp4"), "r+b") as f:
      f.truncate(300)  # truncated: reported by item at extraction, the item keeps ID and title
    workdir = tempfile.mkdtemp()
    r = run_main(f"--config={os.path.join(helpers.REPO, 'configs', 'video_folder.py')}:smoke",
                 f"--config.data.dataset.path={root}", f"--workdir={workdir}")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("bikes05.mp4", r.stderr)
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
      m = json.load(f)
    for key in ("test/hr@10", "test/ndcg@10", "test/mrr@10", "test/cold/ndcg@10"):
      self.assertBetween(m[key], 0.0, 1.0)
    self.assertGreater(m["train/samples_per_second"], 0)
    with open(os.path.join(workdir, "features", "meta.json")) as f:
      self.assertEqual(json.load(f)["skipped"], ["bikes05.mp4"])


def _params(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  return ocp.PyTreeCheckpointer().restore(
      os.path.join(workdir, "checkpoints", str(step), "state"))["params"]


if __name__ == "__main__":
  absltest.main()
