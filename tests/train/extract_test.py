"""The feature cache: --mode=extract writes every decodable video's backbone features (bad files
reported and skipped), the cached numbers equal the live backbone's, and training from the cache
runs end to end."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax.data import datasets
from vidrec_jax.data import features
from vidrec_jax.data import flow_cache
from vidrec_jax.data import ops
from vidrec_jax.data import video_io
from vidrec_jax.data.clips import CachedFeatures
from vidrec_jax.data.clips import ClipSampler
from vidrec_jax.data.clips import PixelFrames
from vidrec_jax.models.backbones import part as backbone_part
from vidrec_jax.models import backbones
from vidrec_jax import run_spec

CONFIG = os.path.join(helpers.REPO, "configs", "pretrained.py")


def run_main(*args):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  return subprocess.run([sys.executable, "-m", "vidrec_jax.main", *args], capture_output=True,
                        text=True, env=env, cwd=helpers.REPO, timeout=600, check=False)


class ExtractTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    helpers.require_pretrained("efficientnet_lite0")
    # A private copy of the smoke world with one video file broken.
    cls.data_dir = os.path.join(tempfile.mkdtemp(), "data")
    shutil.copytree(helpers.smoke_world_dir(), cls.data_dir)
    catalog = datasets.get(helpers.load_config().data.dataset, cls.data_dir).catalog
    cls.catalog = catalog
    cls.bad_id = 3
    with open(catalog.path(cls.bad_id), "wb") as f:
      f.write(b"this is not a video")
    cls.workdir = tempfile.mkdtemp()
    cls.common = [f"--config={CONFIG}:smoke", f"--workdir={cls.workdir}",
                  f"--config.data.data_dir={cls.data_dir}"]
    cls.extract = run_main(*cls.common, "--mode=extract")

  def test_extract_skips_the_bad_file_by_name_and_caches_the_rest(self):
    r = self.extract
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn(os.path.basename(self.catalog.path(self.bad_id)), r.stderr)
    cache = os.path.join(self.workdir, "features")
    with open(os.path.join(cache, features.META)) as f:
      meta = json.load(f)
    self.assertEqual(meta["num_skipped"], 1)
    self.assertEqual(meta["skipped"], [self.catalog.filename[self.bad_id]])
    table = features.load_cache(cache)
    self.assertLen(table, len(self.catalog) - 1)
    self.assertNotIn(self.bad_id, table)

  def test_cached_features_equal_the_live_backbone(self):
    config = helpers.load_config("smoke", "pretrained.py")
    b, d = backbone_part.BackboneArgs.from_config(config.model), config.data
    table = features.load_cache(os.path.join(self.workdir, "features"))
    vid = 5
    frames = video_io.decode_video(self.catalog.path(vid), d.frame_size)
    self.assertEqual(table[vid].shape, (len(frames), backbone_part.feature_dim(b)))
    net = backbones.load(b.name)
    live = backbone_part.frame_vectors(
        net, jnp.asarray(ops.normalize(frames, d.normalization)), b.outputs, b.grid)
    np.testing.assert_allclose(table[vid], np.asarray(live), rtol=1e-5, atol=1e-5)

  def test_loader_samples_tsn_segments_and_the_frames_right_after_them(self):
    cache = os.path.join(self.workdir, "features")
    table = features.load_cache(cache)
    dim = next(iter(table.values())).shape[1]
    loader = ClipSampler(CachedFeatures(cache, dim), ("features", "mask", "next_features"), 4)
    vid = 7
    n = len(table[vid])
    ex = loader.clip(vid, None)
    idx, mask = video_io.tsn_indices(n, 4, None)
    np.testing.assert_array_equal(ex["mask"], mask)
    np.testing.assert_array_equal(ex["features"], table[vid][idx] * mask[:, None])
    np.testing.assert_array_equal(ex["next_features"],
                                  table[vid][np.minimum(idx + 1, n - 1)] * mask[:, None])
    bad = loader.clip(self.bad_id, np.random.default_rng(0))
    self.assertEqual(int(bad["valid"]), 0)
    self.assertEqual(bad["next_features"].shape, (4, dim))

  def test_two_processes_write_one_shard_each_with_the_same_features(self):
    # The flow variant: --mode=extract writes the feature cache and the flow cache, each
    # process one shard of each.
    workdir = tempfile.mkdtemp()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run(["bash", os.path.join(helpers.REPO, "launch", "local.sh"), "2",
                        f"--config={CONFIG}:smoke,flow", f"--workdir={workdir}",
                        f"--config.data.data_dir={self.data_dir}", "--mode=extract"],
                       capture_output=True, text=True, env=env, cwd=helpers.REPO, timeout=600,
                       check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    cache = os.path.join(workdir, "features")
    meta = features.read_meta(cache)
    self.assertEqual(meta["shards"],
                     [os.path.basename(features.shard_path(cache, i, 2)) for i in range(2)])
    # Video 3 is process 1's: process 0 writes the metadata, listing it all the same.
    self.assertEqual(meta["skipped"], [self.catalog.filename[self.bad_id]])
    two = features.load_cache(cache)
    one = features.load_cache(os.path.join(self.workdir, "features"))
    self.assertEqual(sorted(two), sorted(one))
    for vid in one:
      np.testing.assert_allclose(two[vid], one[vid], rtol=1e-5, atol=1e-5)
    # The flow cache: two shards, the broken video (process 1's) counted once, and the same
    # fields as one process writes.
    flow_dir = os.path.join(workdir, "flow")
    meta = features.read_meta(flow_dir)
    self.assertEqual(meta["shards"], [flow_cache.shard_name(i, 2) for i in range(2)])
    self.assertEqual(meta["failed"], 1)
    data = run_spec.resolve(helpers.load_config("smoke,flow", "pretrained.py")).data
    single = os.path.join(tempfile.mkdtemp(), "flow")
    flow_cache.write(self.catalog, data, single, show_progress=False, form=meta["form"])
    two, one = features.load_cache(flow_dir), features.load_cache(single)
    self.assertEqual(sorted(two), sorted(one))
    self.assertNotIn(self.bad_id, two)
    for vid in one:
      np.testing.assert_array_equal(two[vid], one[vid])

  def test_flow_stream_beside_cached_features(self):
    # The flow variant reads this workdir's feature cache and writes a flow cache of its own.
    workdir = tempfile.mkdtemp()
    cache = os.path.join(self.workdir, "features")
    r = run_main(f"--config={CONFIG}:smoke,flow", f"--workdir={workdir}",
                 f"--config.data.data_dir={self.data_dir}", f"--config.data.feature_cache={cache}")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
      self.assertIn("test/cold/oracle_gain", json.load(f))
    flow_dir = os.path.join(workdir, "flow")
    self.assertEqual(features.read_meta(flow_dir)["failed"], 1)  # the broken file, by name:
    self.assertIn(os.path.basename(self.catalog.path(self.bad_id)), r.stderr)
    # A clip's flow is the flow cache's field of each sampled frame to the next, the frames
    # lining up with the cached features'.
    table = features.load_cache(cache)
    dim = next(iter(table.values())).shape[1]
    keys = ("features", "mask", "cached_flow")
    loader = ClipSampler(CachedFeatures(cache, dim, stored={"cached_flow": flow_dir}), keys, 4)
    config = helpers.load_config("smoke,flow", "pretrained.py")
    vid = 7
    frames = video_io.decode_video(self.catalog.path(vid), config.data.frame_size,
                                   config.data.cache_frames)
    self.assertLen(frames, len(table[vid]))
    ex = loader.clip(vid, None)
    idx, mask = video_io.tsn_indices(len(frames), 4, None)
    nxt = np.minimum(idx + 1, len(frames) - 1)
    want = ops.video_flow(frames)[idx] * ((nxt > idx) * mask)[:, None, None, None]
    np.testing.assert_allclose(ex["cached_flow"], want, atol=1e-5)
    self.assertGreater(np.abs(want).max(), 0.1)  # the clip moves
    np.testing.assert_array_equal(ex["features"], table[vid][idx] * mask[:, None])
    self.assertEqual(int(loader.clip(self.bad_id, None)["valid"]), 0)
    # An unreadable video's zero inputs have each input's own shape, from pixels too.
    self.assertEqual(loader.clip(self.bad_id, None)["cached_flow"].shape, want.shape)
    pixels = ClipSampler(PixelFrames(self.catalog, 16, "unit", 0, 64),
                         ("frames", "mask", "flow", "frame_pairs"), 4)
    shapes = {k: v.shape for k, v in pixels.clip(self.bad_id, None).items()}
    self.assertEqual(shapes, {k: v.shape for k, v in pixels.clip(vid, None).items()})
    self.assertEqual(shapes["flow"], (4, 16, 16, 2))
    # Without a flow cache beside the features the input cannot be served: said at once.
    with self.assertRaisesRegex(ValueError, "cached_flow.*its own cache"):
      ClipSampler(CachedFeatures(cache, dim), keys, 4)

  def test_train_on_whitened_features(self):
    # The frame head reads 4 whitened components of the cached features and their flow
    # histograms (the run writes its flow cache), fitted on the training videos; evaluation
    # reads through the same map, and the broken video is skipped by name.
    workdir = tempfile.mkdtemp()
    args = [f"--config={CONFIG}:smoke", f"--workdir={workdir}",
            f"--config.data.data_dir={self.data_dir}",
            f"--config.data.feature_cache={os.path.join(self.workdir, 'features')}"]
    r = run_main(*args, "--config.model.backbone.whiten=4",
                 "--config.model.backbone.whiten_flow=True")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertEqual(features.read_meta(os.path.join(workdir, "flow"))["failed"], 1)
    self.assertIn(f"video {self.bad_id}: no cached features", r.stderr)
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
      self.assertIn("test/cold/oracle_gain", json.load(f))
    # the frame head's first layer reads the 4 components and their segment differences
    self.assertRegex(r.stderr, r"frame_encoder/mix/layers/0/kernel\s+\(8, ")
    r = run_main(*args[:1], f"--workdir={tempfile.mkdtemp()}", *args[2:],
                 "--config.model.backbone.whiten=100000")
    self.assertEqual(r.returncode, 2, r.stderr[-3000:])  # a config error
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(err, 1)
    self.assertIn("model.backbone.whiten", err[0])
    r = run_main(*args[:1], f"--workdir={tempfile.mkdtemp()}", *args[2:],
                 "--config.model.backbone.whiten_flow=True")
    self.assertEqual(r.returncode, 2, r.stderr[-3000:])
    self.assertIn("whiten_flow=True is not allowed; True or False; True needs "
                  "model.backbone.whiten > 0", r.stderr)

  def test_train_from_cache_and_a_mismatched_cache_is_one_line(self):
    r = run_main(*self.common)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(self.workdir, "eval", "metrics.json")) as f:
      self.assertIn("test/cold/oracle_gain", json.load(f))
    # Another workdir reading this cache with another grid: the cache is refused in one line.
    cache = os.path.join(self.workdir, "features")
    r = run_main(f"--config={CONFIG}:smoke", f"--workdir={tempfile.mkdtemp()}",
                 f"--config.data.data_dir={self.data_dir}", f"--config.data.feature_cache={cache}",
                 "--config.model.backbone.grid=2")
    self.assertEqual(r.returncode, 1, r.stderr[-3000:])
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(err, 1)
    self.assertIn("grid=1", err[0])
    # The same change in the trained workdir is refused by its config of record first.
    r = run_main(*self.common, "--config.model.backbone.grid=2")
    self.assertEqual(r.returncode, 1, r.stderr[-3000:])
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(err, 1)
    self.assertIn("model.backbone.grid: 1 -> 2", err[0])


if __name__ == "__main__":
  absltest.main()
