"""PCA whitening of cached features (model.backbone.whiten): fitted on the training videos'
frames only, decorrelated unit-variance components, a deterministic map, bad sizes refused."""

import os
import pickle
import tempfile

import cloudpickle
import numpy as np
from absl.testing import absltest
from array_record.python import array_record_module

from vidrec_jax.data import features
from vidrec_jax.data import motion
from vidrec_jax.data import video_io
from vidrec_jax.data.clips import CachedFeatures
from vidrec_jax.data.clips import ClipSampler
from vidrec_jax.train import catalog


def table(seed: int = 0, videos: int = 12, dim: int = 10) -> dict[int, np.ndarray]:
  rng = np.random.default_rng(seed)
  mix = rng.normal(size=(dim, dim))  # correlated features of unequal scales
  return {v: (rng.normal(size=(int(rng.integers(3, 9)), dim)) @ mix + 5.0).astype(np.float32)
          for v in range(videos)}


class WhiteningTest(absltest.TestCase):

  def test_fitted_frames_come_out_decorrelated_with_unit_variance(self):
    t = table()
    train = [0, 1, 2, 3, 4, 5, 6, 7]
    w = features.fit_whitening(t, train + train[:3], 4)  # repeats count once
    self.assertEqual(w.dim, 4)
    z = np.concatenate([w(t[v]) for v in train])
    self.assertEqual(z.dtype, np.float32)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(4), atol=1e-4)
    # the components are the top ones: no other unit direction of the standardised frames
    # varies more than the first
    x = np.concatenate([w.columns(t[v]) for v in train])
    top = np.var(x @ (w.proj[:, 0] / np.linalg.norm(w.proj[:, 0])))
    rng = np.random.default_rng(1)
    for _ in range(20):
      d = rng.normal(size=x.shape[1])
      self.assertLessEqual(np.var(x @ (d / np.linalg.norm(d))), top + 1e-9)
    # other videos (cold ones) took no part in the fit
    t2 = dict(t)
    t2[11] = t2[11] * 100.0
    np.testing.assert_array_equal(features.fit_whitening(t2, train, 4).proj, w.proj)

  def test_flow_histograms_join_the_features(self):
    t = table()
    rng = np.random.default_rng(2)
    flows = {v: rng.normal(size=(len(f), 8, 8, 2)).astype(np.float32) * (1 + v % 3)
             for v, f in t.items()}
    w = features.fit_whitening(t, range(8), 6, flows)
    self.assertTrue(w.flow)
    self.assertEqual(w.proj.shape, (10 + motion.HISTOGRAM_FEATURES, 6))
    z = np.concatenate([w(t[v], flows[v]) for v in range(8)])
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(6), atol=1e-4)
    # the motion columns are the histograms of each frame's field
    cols = w.columns(t[9], flows[9]) * w.std + w.mean
    np.testing.assert_allclose(cols[:, 10:], motion.flow_histograms(flows[9]), rtol=1e-5,
                               atol=1e-6)
    with self.assertRaisesRegex(features.CacheError, "flow of each of the"):
      w(t[9], flows[9][:1])
    with self.assertRaisesRegex(features.CacheError, "got none"):
      w(t[9])
    # a loader without the flow beside the features is refused at once
    with self.assertRaisesRegex(ValueError, "reads the flow from the 'cached_flow' cache"):
      CachedFeatures("unused", 10, whitening=w)

  def test_the_map_is_deterministic_with_fixed_signs(self):
    t = table()
    a = features.fit_whitening(t, range(8), 3)
    b = features.fit_whitening({v: t[v] for v in reversed(range(12))}, range(7, -1, -1), 3)
    np.testing.assert_array_equal(a.proj, b.proj)
    # each component's largest loading is positive
    self.assertTrue(np.all(a.proj[np.argmax(np.abs(a.proj), 0), range(3)] > 0))

  def test_bad_sizes_are_one_line(self):
    t = table(videos=3, dim=10)
    with self.assertRaisesRegex(features.CacheError, "11 components.*allowed: 1 to 10"):
      features.fit_whitening(t, range(3), 11)
    with self.assertRaisesRegex(features.CacheError, "no cached features for any training"):
      features.fit_whitening(t, [50, 51], 2)

  def test_the_streamed_fit_picks_the_same_frames_as_the_whole_table(self):
    t = table(seed=5, videos=30)
    flows = {v: np.random.default_rng(v).normal(size=(len(x), 4, 4, 2)).astype(np.float32)
             for v, x in t.items()}
    train = list(range(0, 30, 2))
    for max_rows in (17, 1000):  # a subsample, and every frame
      rows = np.concatenate([np.concatenate([features.frame_norm(t[v]),
                                             motion.flow_histograms(flows[v])], axis=1)
                             for v in train])
      if len(rows) > max_rows:
        rows = rows[np.linspace(0, len(rows) - 1, max_rows).astype(int)]
      w = features.fit_whitening(t, train, 6, flows, max_rows=max_rows)
      cols = (rows - w.mean) / w.std
      np.testing.assert_allclose(cols.mean(0), 0.0, atol=1e-9)
      np.testing.assert_allclose(w.mean, rows.mean(0), rtol=1e-12)
      np.testing.assert_allclose(np.cov(cols @ w.proj, rowvar=False, bias=True), np.eye(6),
                                 atol=1e-6)
      # a flow cache of histograms gives the same map as one of fields
      hists = {v: motion.flow_histograms(f) for v, f in flows.items()}
      np.testing.assert_array_equal(
          features.fit_whitening(t, train, 6, hists, max_rows=max_rows).proj, w.proj)

  def test_the_loader_and_the_catalog_serve_the_whitened_features(self):
    t = table()
    cache = tempfile.mkdtemp()
    shard = features.shard_path(cache, 0, 1)
    writer = array_record_module.ArrayRecordWriter(shard, "group_size:1")
    for vid, f in t.items():
      writer.write(features.encode_record(vid, np.arange(len(f)), f))
    writer.close()
    features.write_meta(cache, {"dim": 10, "shards": [os.path.basename(shard)]})
    w = features.fit_whitening(features.load_cache(cache), range(8), 5)
    sampler = ClipSampler(CachedFeatures(cache, 10, whitening=w), ("features", "mask"), 4)
    ex = sampler.clip(9, None)
    self.assertEqual(ex["features"].shape, (4, 5))
    idx, mask = video_io.tsn_indices(len(t[9]), 4, None)
    np.testing.assert_allclose(ex["features"], w(t[9])[idx] * mask[:, None], rtol=1e-5)
    worker = pickle.loads(cloudpickle.dumps(sampler))  # what a loader worker receives (Grain)
    np.testing.assert_array_equal(worker.clip(9, None)["features"], ex["features"])
    bad = sampler.clip(99, None)  # no features: zeros of the whitened width, invalid
    self.assertEqual((bad["features"].shape, int(bad["valid"])), ((4, 5), 0))
    # a sequential model's catalog table pools the same whitened frames
    pooled = catalog.pooled_video_features(cache, 13, 5, w)
    np.testing.assert_allclose(pooled[9], np.concatenate([w(t[9]).mean(0), w(t[9]).max(0)]),
                               rtol=1e-5)
    np.testing.assert_array_equal(pooled[12], 0.0)  # not in the cache

if __name__ == "__main__":
  absltest.main()
