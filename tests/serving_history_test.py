"""Serving models whose users are watch histories: the two-tower model with the sasrec user tower
and the sequential (SASRec) next-item model, each trained in-process, exported, and answered by
the bundle alone: the same lists as --mode=recommend, the user's logged clicks stored in the
bundle, a history given in the request, watched videos left out, and the list a user without a
history gets."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax import experiment
from vidrec_jax import export
from vidrec_jax import recommend
from vidrec_jax import serving
from vidrec_jax.data import sequences
from vidrec_jax.train import catalog as catalog_lib


class _HistoryServing:
  """Shared by both kinds: `config()` gives the run's config; trained, exported and recommended
  once per class."""

  K = 5

  @classmethod
  def config(cls):
    raise NotImplementedError

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp()
    cls.cfg = cls.config()
    experiment.train(cls.cfg, cls.workdir)
    cls.cfg.mode = "export"
    cls.restored = experiment.restore(cls.cfg, cls.workdir, "latest", "export")
    cls.bundle_dir = export.export(cls.restored, cls.workdir,
                                      os.path.join(tempfile.mkdtemp(), "b"))
    cls.bundle = serving.load(cls.bundle_dir)
    cls.user = sorted(cls.bundle.users)[0]
    cls.mode_out = recommend.recommend(cls.restored, cls.workdir, cls.user, cls.K)

  def _logged(self, user: str) -> list[int]:
    """The user's positives over all splits in log order, from the dataset's columns."""
    ctx = self.restored[0]
    ds = ctx.dataset
    raw = np.asarray(ds.users) if ds.users is not None else None
    order = "order" if ctx.run.model.name == "sequential" else "timestamp"
    out = []
    for s in ds.splits:
      c = ds.split(s).columns
      pos = c["click"] > 0 if "click" in c else np.ones(len(c["user_id"]), bool)
      names = raw[c["user_id"]] if raw is not None else c["user_id"]
      sel = pos & (names.astype(str) == user)
      out += list(zip(c[order][sel].tolist(), c["video_id"][sel].tolist()))
    return [v for _, v in sorted(out, key=lambda t: t[0])]

  def _trained(self):
    """The restored model, its catalog arrays, the user's logged clicks, and the tower's
    inputs from their ids (the trainer's path)."""
    ctx, params, _ = self.restored
    clicks = self.bundle.histories.logged(self.bundle.row(self.user))
    ids = np.full((1, self.cfg.data.history.max_len), sequences.PAD, np.int32)
    ids[0, :len(clicks)] = clicks
    inputs = {"history": jnp.asarray(ids), "history_mask": jnp.asarray(ids >= 0, jnp.float32)}
    return (ctx.setup.model(jax.device_get(params)), catalog_lib.catalog_arrays(ctx), clicks,
            inputs)

  def test_manifest_names_a_history_tower(self):
    m = self.bundle.manifest
    self.assertEqual((m["format_version"], m["user_input"], m["max_len"]),
                     (serving.FORMAT_VERSION, "history", self.cfg.data.history.max_len))
    self.assertIn(serving.HISTORIES, m["files"])
    self.assertTrue(m["exclude_watched"])

  def test_bundle_gives_the_lists_of_recommend_mode(self):
    got = self.bundle.recommend(self.user, self.K)
    want = self.mode_out["records"]
    self.assertLen(got, self.K)
    self.assertEqual([r["video_id"] for r in got], [r["video_id"] for r in want])
    for g, w in zip(got, want):
      self.assertAlmostEqual(g["score"], w["score"], places=5)

  def test_logged_history_is_the_users_last_clicks_and_is_never_listed(self):
    max_len = self.cfg.data.history.max_len
    for user in sorted(self.bundle.users)[:4]:
      logged = self._logged(user)
      got = self.bundle.histories.logged(self.bundle.row(user)).tolist()
      self.assertEqual(got, logged[-max_len:], user)
      listed = [r["video_id"] for r in self.bundle.recommend(user, self.K)]
      self.assertEmpty(set(listed) & set(logged[-max_len:]), user)

  def test_a_history_in_the_request_answers_as_the_logged_one(self):
    logged = self.bundle.histories.logged(self.bundle.row(self.user)).tolist()
    self.assertEqual(self.bundle.recommend(history=logged, k=self.K),
                     self.bundle.recommend(self.user, self.K))
    # Another history, another list; its own videos left out.
    other = [r["video_id"] for r in self.bundle.recommend(self.user, self.K)][:2]
    listed = [r["video_id"] for r in self.bundle.recommend(history=other, k=self.K)]
    self.assertEmpty(set(listed) & set(other))

  def test_a_batch_answers_as_one_request_each(self):
    # The service answers queued requests together (one retrieval call); the lists must be
    # those of one call each, unknown users and given histories mixed in.
    users = sorted(self.bundle.users)[:5] + ["nobody"]
    given = self.bundle.histories.logged(self.bundle.row(users[1])).tolist()[:2]
    requests = [self.bundle.request(u, self.K) for u in users]
    requests.append(self.bundle.request(None, 3, given))
    want = [self.bundle.recommend(u, self.K) for u in users]
    want.append(self.bundle.recommend(history=given, k=3))
    self.assertEqual(self.bundle.answer_many(requests), want)

  def test_no_history_gets_the_most_clicked_videos(self):
    empty = self.bundle.recommend(history=[], k=self.K)
    self.assertEqual(empty, self.bundle.recommend("nobody", self.K))
    self.assertIsNotNone(self.bundle.note("nobody"))
    pop = self.bundle.histories.popularity
    counts = [r["scores"]["popularity"] for r in empty]
    self.assertEqual(counts, sorted(counts, reverse=True))
    self.assertEqual(counts[0], pop[self.bundle.items.video_ids].max())

  def test_bad_histories_and_k_are_refused_in_one_line(self):
    n = len(self.bundle.histories.vectors)
    for history, why in (([0, n], "not catalog video ids"), ([0, "x"], "not catalog video ids"),
                         ([True], "not catalog video ids"), ("0 1", "a list of video ids")):
      with self.assertRaisesRegex(ValueError, why) as cm:
        self.bundle.recommend(history=history, k=3)
      self.assertNotIn("\n", str(cm.exception))
    for k in (0, self.bundle.candidates + 1, 2.5):
      with self.assertRaisesRegex(ValueError, "is not allowed"):
        self.bundle.recommend(self.user, k)
    with self.assertRaisesRegex(ValueError, "not both"):
      self.bundle.recommend(self.user, 3, history=[0])

  def test_an_older_or_newer_format_version(self):
    d = helpers.bundle_with_manifest(self.bundle_dir, lambda m: m.update(format_version=99))
    with self.assertRaisesRegex(serving.BundleError, "format version 99, this reader reads 1, 2"):
      serving.load(d)


def _demo_smoke(tower: str):
  """configs/demo.py:smoke with a history tower, on the smoke world, 3 steps."""
  c = helpers.load_config(f"smoke,{tower}")
  c.data.data_dir = helpers.smoke_world_dir()
  c.train.steps = 3
  c.recommend.candidates = 12
  return c


class SASRecTwoTowerTest(_HistoryServing, absltest.TestCase):

  @classmethod
  def config(cls):
    c = _demo_smoke("sasrec")
    c.recommend.fusion = "click * (1 + 0.1 * watch_time)"
    return c

  def test_the_served_user_vector_is_the_trained_towers(self):
    # The bundle feeds the tower precomputed history-item vectors; the trainer feeds it ids.
    model, catalog, clicks, ids = self._trained()
    want = model.encode_users(ids, catalog)
    got = model.encode_history_vectors(*map(jnp.asarray, self.bundle.histories.window(clicks)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-5)


class DINTwoTowerTest(_HistoryServing, absltest.TestCase):
  """din: the user vector depends on the candidate, so retrieval is item-to-item (the mean
  retrieval vector of the history's videos) and the ranker attends once per candidate."""

  @classmethod
  def config(cls):
    return _demo_smoke("din")

  def test_manifest_names_a_history_tower(self):
    m = self.bundle.manifest
    self.assertEqual(m["user_input"], "history_candidate")
    self.assertNotIn(serving.USER_TOWER, m["files"])
    self.assertIsNone(self.bundle.exported[0])

  def test_the_ranker_scores_as_the_trained_model(self):
    model, catalog, _, ids = self._trained()
    recs = self.bundle.recommend(self.user, self.K)
    rows = [self.bundle.item_row(r["video_id"]) for r in recs]
    items = jnp.asarray(self.bundle.items.ranking[rows])
    c = len(rows)
    inputs = {k: jnp.broadcast_to(v, (c,) + v.shape[1:]) for k, v in ids.items()}
    u = model.encode_users(inputs, catalog, candidate=items)
    want = model.predictions(model.score(u, items))["click"]
    np.testing.assert_allclose([r["scores"]["click"] for r in recs], np.asarray(want),
                               rtol=2e-4, atol=2e-5)

  def test_retrieval_searches_with_the_historys_mean(self):
    clicks = self.bundle.histories.logged(self.bundle.row(self.user))
    rows = [r for r in map(self.bundle.item_row, clicks) if r is not None]
    want = np.asarray(self.bundle.items.retrieval[rows]).mean(0)
    np.testing.assert_allclose(self.bundle.user_vector(self.user), want, rtol=1e-6)


class SequentialTest(_HistoryServing, absltest.TestCase):

  @classmethod
  def config(cls):
    folder = tempfile.mkdtemp()
    helpers.make_microlens_folder(folder)
    c = helpers.load_config("smoke", "microlens.py")
    c.data.dataset.path = folder
    c.recommend.candidates = 8
    return c

  def test_lists_are_the_full_sort_order_without_the_history(self):
    # The sequential model's served list is its evaluation's order: every item by the dot
    # product of the user state (from the ids, as full_sort computes it) and the item.
    model, catalog, clicks, ids = self._trained()
    u = model.user_states(ids, catalog)
    scores = np.array(model.all_items(catalog) @ u[0])
    scores[clicks] = -np.inf
    want = np.lexsort((np.arange(len(scores)), -scores))[:self.K]
    got = [r["video_id"] for r in self.bundle.recommend(self.user, self.K)]
    self.assertEqual(got, want.tolist())
    self.assertEqual(self.bundle.heads, ("score",))


if __name__ == "__main__":
  absltest.main()
