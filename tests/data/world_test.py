"""The synthetic world: deterministic from its seed, cold-start videos never in training."""

import dataclasses

import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax.data import datasets
from vidrec_jax.data import render
from vidrec_jax.data import world as world_lib


class WorldTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.cfg = helpers.load_config().data.dataset

  def test_deterministic_from_seed(self):
    a, b = world_lib.World(self.cfg), world_lib.World(self.cfg)
    for k in a.impressions:
      np.testing.assert_array_equal(a.impressions[k], b.impressions[k])
    self.assertEqual(a.videos, b.videos)
    np.testing.assert_array_equal(render.render(a.videos[3], 32, 0.02, 1),
                                  render.render(b.videos[3], 32, 0.02, 1))
    other = self.cfg.copy_and_resolve_references()
    other.seed += 1
    c = world_lib.World(other)
    self.assertFalse(np.array_equal(a.impressions["video_id"], c.impressions["video_id"]))

  def test_cold_videos_never_in_training_and_do_appear_later(self):
    w = world_lib.World(self.cfg)
    cold = {v.video_id for v in w.videos if v.cold}
    self.assertGreaterEqual(len(cold), 0.2 * len(w.videos))
    train = set(w.split_impressions("train")["video_id"].tolist())
    self.assertEmpty(train & cold)
    for split in ("valid", "test"):
      rows = w.split_impressions(split)
      self.assertNotEmpty(set(rows["video_id"].tolist()) & cold)
      np.testing.assert_array_equal(rows["cold"], np.isin(rows["video_id"], list(cold)))

  def test_splits_are_ordered_in_time(self):
    w = world_lib.World(self.cfg)
    tr, va, te = (w.split_impressions(s)["timestamp"] for s in world_lib.SPLITS)
    self.assertLess(tr.max(), va.min())
    self.assertLess(va.max(), te.min())

  def test_oracle_and_labels(self):
    w = world_lib.World(self.cfg)
    imp = w.impressions
    np.testing.assert_allclose(w.oracle_prob(imp["user_id"], imp["video_id"]), imp["oracle_prob"],
                               rtol=1e-6)
    self.assertTrue(np.all(imp["watch_time"][imp["click"] == 0] == 0))
    self.assertTrue(np.all(imp["like"] <= imp["click"]))
    durations = np.array([v.num_frames for v in w.videos]) / self.cfg.fps
    self.assertTrue(np.all(imp["watch_time"] <= durations[imp["video_id"]] + 1e-6))

  def test_motion_is_invisible_in_a_single_frame(self):
    # Two videos that differ only in direction have identical first frames.
    w = world_lib.World(self.cfg)
    v = w.videos[0]
    other = world_lib.Video(**{**v.__dict__, "direction": (v.direction + 1) % 4})
    a, b = render.render(v, 32, 0.0, 0), render.render(other, 32, 0.0, 0)
    np.testing.assert_array_equal(a[0], b[0])
    self.assertFalse(np.array_equal(a[1:], b[1:]))

  def test_without_order_tastes_every_clip_keeps_one_palette(self):
    w = world_lib.World(self.cfg)
    self.assertTrue(all(v.palette2 == -1 for v in w.videos))
    self.assertFalse(w.order_features.any())
    self.assertFalse(w.user_order_taste.any())

  def test_order_tastes_are_antisymmetric_and_invisible_to_orderless_pooling(self):
    cfg = self.cfg.copy_and_resolve_references()
    cfg.update(order_weight=1.5, appearance_weight=0.0, motion_weight=0.0)
    w = world_lib.World(cfg)
    self.assertTrue(all(0 <= v.palette2 != v.palette for v in w.videos))
    # Users disagree about the order of one pair of colours.
    v = w.videos[0]
    users = np.arange(cfg.num_users)
    term = w.user_order_taste[:, v.palette2] - w.user_order_taste[:, v.palette]
    np.testing.assert_allclose(w.affinity(users, np.zeros_like(users)), term, rtol=1e-5)
    self.assertGreater(np.std(term), 0.3)
    # The clip shows its first palette, then its second; the reversed clip the other way round.
    fwd = dataclasses.replace(v, num_frames=8)
    rev = dataclasses.replace(fwd, palette=v.palette2, palette2=v.palette)
    first, second = (render.render(dataclasses.replace(fwd, palette=p, palette2=-1), 32, 0.0, 0)
                     for p in (v.palette, v.palette2))
    a, b = render.render(fwd, 32, 0.0, 0), render.render(rev, 32, 0.0, 0)
    np.testing.assert_array_equal(a, np.concatenate([first[:4], second[4:]]))
    np.testing.assert_array_equal(b, np.concatenate([second[:4], first[4:]]))
    feats = w.order_features[0]
    self.assertEqual(feats[v.palette2], 1.0)
    self.assertEqual(feats[v.palette], -1.0)
    # The clicks follow the order taste alone.
    imp = w.impressions
    aff = w.affinity(imp["user_id"], imp["video_id"])
    self.assertGreater(imp["click"][aff > 1].mean(), imp["click"][aff < -1].mean() + 0.2)



class ExposureTest(absltest.TestCase):
  """`exposure_taste`: slates from a segment-level feed instead of uniform draws."""

  def setUp(self):
    super().setUp()
    self.cfg = helpers.load_config().data.dataset.copy_and_resolve_references()
    self.cfg.update(num_users=200, num_videos=300, slates_per_user=10)

  def world(self, taste):
    cfg = self.cfg.copy_and_resolve_references()
    cfg.exposure_taste = taste
    return world_lib.World(cfg)

  def test_off_keeps_the_stamp_of_worlds_built_before_it(self):
    # A data dir built before the field existed has no `exposure_taste` in its stamp: it is
    # reused while the field is off, and a world with it on is a different world.
    off, on = self.world(0.0), self.world(1.0)
    self.assertNotIn("exposure_taste", off.config.settings())
    self.assertEqual(on.config.settings()["exposure_taste"], 1.0)
    np.testing.assert_array_equal(off.user_taste, on.user_taste)  # the same users and videos
    self.assertEqual(off.videos, on.videos)

  def test_feed_shows_what_the_segment_likes_without_repeats_or_early_cold(self):
    off, on = self.world(0.0), self.world(2.0)
    for w in (off, on):
      imp = w.impressions
      shown = imp["video_id"]
      seg = np.einsum("nf,nf->n", w.persona_taste[w.user_persona[imp["user_id"]]],
                      w.features[shown])
      w.mean_segment_affinity = seg.mean()
      # No video twice in one slate (a slate: one user, one start time, consecutive positions).
      slate = np.round(imp["timestamp"] - imp["position"] * 0.5, 3)
      keys = set()
      for u, t, v in zip(imp["user_id"].tolist(), slate.tolist(), shown.tolist()):
        self.assertNotIn((u, t, v), keys)
        keys.add((u, t, v))
      cold = np.array([w.videos[v].cold for v in shown])
      self.assertFalse(cold[imp["timestamp"] < w.train_end].any())
      self.assertTrue(cold[imp["timestamp"] >= w.train_end].any())
    # The uniform slates show the catalog's average affinity (~0, tastes are centred); the feed
    # shows what the segment likes, so the users click more.
    self.assertLess(abs(off.mean_segment_affinity), 0.3)
    self.assertGreater(on.mean_segment_affinity, off.mean_segment_affinity + 1.0)
    self.assertGreater(on.impressions["click"].mean(), off.impressions["click"].mean() + 0.1)

  def test_negative_is_refused_in_one_line(self):
    cfg = helpers.load_config()
    cfg.data.dataset.exposure_taste = -1.0
    with self.assertRaisesRegex(Exception, r"data\.dataset\.exposure_taste.*>= 0"):
      datasets.DATASETS.get("synthetic").validate(cfg.data.dataset)


if __name__ == "__main__":
  absltest.main()
