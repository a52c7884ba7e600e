"""Grain pipeline: exact resume at a batch index, topology-independent global batches, bad files."""

import dataclasses
import os
import shutil
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax.data import datasets
from vidrec_jax.data import features
from vidrec_jax.data import flow
from vidrec_jax.data import flow_cache
from vidrec_jax.data import grouping
from vidrec_jax.data import motion
from vidrec_jax.data import ops
from vidrec_jax.data import pipeline
from vidrec_jax.data import video_io
from vidrec_jax.data.clips import ClipSampler
from vidrec_jax.data.clips import PixelFrames
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.data.vocab import Vocab
from vidrec_jax.models import recommender


def _load(config, data_dir):
  return datasets.get(config.data.dataset, data_dir)


def _dataset(config, data_dir, process_index=0, process_count=1, start_batch=0):
  """The training stream as the supervised trainer builds it."""
  ds = _load(config, data_dir)
  cols = ds.split("train").columns
  d = config.data
  spec = recommender.input_spec(config.model)
  frames = PixelFrames(ds.catalog, d.frame_size, d.normalization, d.cache_videos, d.cache_frames)
  return pipeline.train_dataset(
      ds.split("train"), spec, ClipSampler(frames if spec.clip else None, spec.clip,
                                           d.num_frames),
      user_vocab=Vocab(cols["user_id"], int(cols["user_id"].max())),
      video_vocab=Vocab(cols["video_id"], len(ds.catalog) - 1), video_ids=cols["video_id"],
      batch_size=d.batch_size, impressions_per_clip=d.impressions_per_clip,
      shuffle_seed=d.shuffle_seed, process_index=process_index, process_count=process_count,
      options=pipeline.LoaderOptions(d.num_workers, d.read_threads, d.prefetch_batches),
      start_batch=start_batch)


def _blas_threads(_):
  """The thread count of numpy's BLAS in the process that runs it (a loader worker's map); the
  test's imports load other BLAS libraries too (OpenCV's), which the loader never calls."""
  import threadpoolctl  # pylint: disable=g-import-not-at-top
  (n,) = [i["num_threads"] for i in threadpoolctl.threadpool_info()
          if i["user_api"] == "blas" and "numpy" in i["filepath"]]
  return np.int32(n)


def _worker_blas_threads() -> set[int]:
  """BLAS threads seen by the elements of a one-worker loader whose workers start with two
  (OPENBLAS_NUM_THREADS, read when a spawned worker imports numpy)."""
  import grain  # pylint: disable=g-import-not-at-top
  with mock.patch.dict(os.environ, {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}):
    it = iter(pipeline.iterable(grain.MapDataset.range(3).map(_blas_threads),
                                pipeline.LoaderOptions(1, 1, 1)))
    try:
      return {int(x) for x in it}
    finally:
      pipeline.close(it)


def _assert_batches_equal(test, a, b):
  test.assertEqual(sorted(a), sorted(b))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


class PipelineTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = helpers.smoke_world_dir()
    cls.config = helpers.load_config()

  def test_batch_contents(self):
    c = self.config
    b = next(iter(_dataset(c, self.data_dir)))
    k, s, bs = c.data.num_frames, c.data.frame_size, c.data.batch_size
    self.assertEqual(b["frames"].shape, (bs, k, s, s, 3))
    self.assertEqual(b["frames"].dtype, np.float32)
    self.assertEqual(b["mask"].shape, (bs, k))
    self.assertTrue(np.all(b["valid"] == 1))
    self.assertLessEqual(np.abs(b["frames"]).max(), 1.0)
    catalog = _load(c, self.data_dir).catalog
    # Clips shorter than K frames are padded and masked, never silently truncated.
    lengths = catalog.extra["num_frames"][b["video_id"]]
    np.testing.assert_array_equal(b["mask"].sum(1), np.minimum(lengths, k))
    self.assertFalse(np.any(catalog.cold[b["video_id"]]))

  def test_each_training_impression_is_served_exactly_once_per_epoch(self):
    split = _load(self.config, self.data_dir).split("train")
    vids = split.columns["video_id"]
    groups = grouping.group_by_clip(vids, 3, seed=0)
    rows = groups[groups >= 0]
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(split)))
    for g in groups:  # one video per chunk, padding only at the end
      real = g[g >= 0]
      self.assertLen(set(vids[real].tolist()), 1)
      self.assertTrue(np.all(g[len(real):] == -1))
    ex = grouping.GroupedSource(split, groups, ("click", "position"))[0]
    self.assertEqual(ex["user_id"].shape, (3,))
    self.assertEqual(ex["position"].dtype, np.int32)
    np.testing.assert_array_equal(ex["weight"], (groups[0] >= 0).astype(np.float32))

  def test_start_batch_resumes_identical_batches(self):
    it = iter(_dataset(self.config, self.data_dir))
    for _ in range(3):
      next(it)
    expected = [next(it) for _ in range(4)]
    resumed = iter(_dataset(self.config, self.data_dir, start_batch=3))
    for e in expected:
      _assert_batches_equal(self, e, next(resumed))

  def test_worker_processes_give_the_same_stream_and_resume(self):
    c = self.config.copy_and_resolve_references()
    c.data.num_workers = 2
    plain = iter(_dataset(self.config, self.data_dir))
    expected = [next(plain) for _ in range(3)]
    workers = iter(_dataset(c, self.data_dir))
    for e in expected:
      _assert_batches_equal(self, e, next(workers))
    # Resuming at batch 1 on the other half of a 2-process run: its rows of the same batches.
    half = iter(_dataset(c, self.data_dir, 1, 2, start_batch=1))
    for e in expected[1:]:
      got = next(half)
      rows = slice(c.data.batch_size // 2, None)
      _assert_batches_equal(self, {k: v[rows] for k, v in e.items()}, got)

  def test_loader_workers_run_blas_on_one_thread(self):
    # The workers are the loader's parallelism: BLAS threads beside them oversubscribe the cores.
    self.assertEqual(_worker_blas_threads(), {1})
    with mock.patch.object(pipeline, "one_blas_thread", lambda i, n: None):
      self.assertEqual(_worker_blas_threads(), {2})  # what a worker would run with, unset

  def test_global_batch_is_the_same_for_any_process_count(self):
    one = iter(_dataset(self.config, self.data_dir))
    halves = [iter(_dataset(self.config, self.data_dir, p, 2)) for p in range(2)]
    for _ in range(3):
      full = next(one)
      parts = [next(h) for h in halves]
      joined = {k: np.concatenate([p[k] for p in parts]) for k in full}
      _assert_batches_equal(self, full, joined)

  def test_bad_video_is_reported_and_skipped(self):
    d = tempfile.mkdtemp()
    shutil.copytree(self.data_dir, d, dirs_exist_ok=True)
    catalog = _load(self.config, d).catalog
    b = next(iter(_dataset(self.config, d)))
    victim = int(b["video_id"][0])
    with open(catalog.path(victim), "wb") as f:
      f.write(b"garbage")
    with self.assertLogs(level="WARNING") as logs:
      b2 = next(iter(_dataset(self.config, d)))
    rows = b2["video_id"] == victim
    self.assertTrue(np.all(b2["valid"][rows] == 0))
    self.assertTrue(np.all(b2["valid"][~rows] == 1))
    self.assertTrue(np.all(b2["frames"][rows] == 0))
    self.assertTrue(any(os.path.basename(catalog.path(victim)) in m for m in logs.output))

  def test_id_only_model_decodes_nothing(self):
    c = helpers.load_config("smoke,id_only")
    b = next(iter(_dataset(c, self.data_dir)))
    self.assertNotIn("frames", b)
    self.assertTrue(np.all(b["valid"] == 1))
    self.assertEqual(b["user"].shape, (c.data.batch_size, c.data.impressions_per_clip))

  def test_motion_is_the_next_frame_difference(self):
    catalog = _load(self.config, self.data_dir).catalog
    c = self.config.data
    sampler = ClipSampler(PixelFrames(catalog, c.frame_size, c.normalization, 0, c.cache_frames),
                          ("frames", "mask", "motion"), c.num_frames)
    ex = sampler.clip(3, None)
    frames = video_io.decode_video(catalog.path(3), c.frame_size)
    idx, mask = video_io.tsn_indices(len(frames), c.num_frames, None)
    nxt = np.minimum(idx + 1, len(frames) - 1)
    expected = (frames[nxt].astype(np.float32) - frames[idx]) / 127.5 * mask[:, None, None, None]
    np.testing.assert_allclose(ex["motion"], expected, atol=1e-5)

  def test_loader_flow_is_estimated_once_per_video(self):
    catalog = _load(self.config, self.data_dir).catalog
    c = self.config.data
    calls = []

    def counted(frames):
      calls.append(len(frames))
      return ops.video_flow(frames)

    flow_op = ops.CLIP_OPS.get("flow")
    self.assertIs(flow_op.per_video, ops.video_flow)
    frames_src = PixelFrames(catalog, c.frame_size, c.normalization, 4, c.cache_frames)
    sampler = ClipSampler(frames_src, ("frames", "mask", "flow"), c.num_frames)
    sampler._ops["flow"] = dataclasses.replace(flow_op, per_video=counted)
    rng = np.random.default_rng(0)
    clips = [sampler.clip(3, rng) for _ in range(3)] + [sampler.clip(3, None)]
    self.assertLen(calls, 1)  # three random views and the centre view: one estimate
    frames = video_io.decode_video(catalog.path(3), c.frame_size, c.cache_frames)
    idx, mask = video_io.tsn_indices(len(frames), c.num_frames, None)
    nxt = np.minimum(idx + 1, len(frames) - 1)
    expected = np.array(flow.estimate_flow(frames[idx], frames[nxt]))
    expected *= ((nxt > idx) * mask)[:, None, None, None]
    self.assertEqual(clips[-1]["flow"].shape, (c.num_frames, c.frame_size, c.frame_size, 2))
    np.testing.assert_allclose(clips[-1]["flow"], expected, atol=1e-4)

  def test_flow_cache_is_written_once_and_read_by_the_loader(self):
    catalog = _load(self.config, self.data_dir).catalog
    c = helpers.load_config("smoke,flow", "encoder_ablation.py")
    c.model.frame_encoder.flow_source = "cache"
    d = c.data
    cache_dir = tempfile.mkdtemp(prefix="vidrec_flow_")
    self.addCleanup(shutil.rmtree, cache_dir)
    meta = flow_cache.write(catalog, c.data, cache_dir, show_progress=False)
    self.assertEqual(meta["videos"], len(catalog))
    features.check_meta(cache_dir, flow_cache.expected_meta(c.data))
    frames = video_io.decode_video(catalog.path(3), d.frame_size, d.cache_frames)
    np.testing.assert_allclose(features.load_cache(cache_dir)[3], ops.video_flow(frames),
                               atol=1e-5)

    def never(frames):
      raise AssertionError("the loader estimated flow that the cache holds")

    frames_src = PixelFrames(catalog, d.frame_size, d.normalization, 4, d.cache_frames,
                             stored={"flow": cache_dir})
    sampler = ClipSampler(frames_src, ("frames", "mask", "flow"), d.num_frames)
    sampler._ops["flow"] = dataclasses.replace(ops.CLIP_OPS.get("flow"), per_video=never)
    idx, mask = video_io.tsn_indices(len(frames), d.num_frames, None)
    nxt = np.minimum(idx + 1, len(frames) - 1)
    expected = np.array(flow.estimate_flow(frames[idx], frames[nxt]))
    expected *= ((nxt > idx) * mask)[:, None, None, None]
    np.testing.assert_allclose(sampler.clip(3, None)["flow"], expected, atol=1e-4)
    # A fields cache serves a reader of histograms too.
    self.assertEqual(flow_cache.check(cache_dir, c.data, "histograms")["form"], "fields")
    # A histograms cache holds each frame's motion histograms only, and refuses a fields reader.
    hist_dir = os.path.join(cache_dir, "hist")
    meta = flow_cache.ensure(catalog, c.data, hist_dir, "histograms")
    self.assertEqual(meta["form"], "histograms")
    np.testing.assert_allclose(features.load_cache(hist_dir)[3],
                               motion.flow_histograms(ops.video_flow(frames)), atol=1e-5)
    self.assertLess(os.path.getsize(os.path.join(hist_dir, flow_cache.shard_name(0, 1))) * 5,
                    os.path.getsize(os.path.join(cache_dir, flow_cache.shard_name(0, 1))))
    with mock.patch.object(flow_cache, "write") as write:  # finished: not written again
      flow_cache.ensure(catalog, c.data, hist_dir, "histograms")
    write.assert_not_called()
    with self.assertRaisesRegex(features.CacheError, "holds histograms, the model reads the flow "
                                "fields") as cm:
      flow_cache.check(hist_dir, c.data, "fields")
    self.assertNotIn("\n", str(cm.exception))
    # A cache written for another frame size is refused in one line.
    c.data.frame_size = d.frame_size * 2
    with self.assertRaisesRegex(features.CacheError, "frame_size"):
      features.check_meta(cache_dir, flow_cache.expected_meta(c.data))

  def test_missing_dataset_is_one_line(self):
    with self.assertRaises(datasets.DataError) as cm:
      synthetic.open_source("/nonexistent/vidrec", "impressions", "train")
    self.assertIn("/nonexistent/vidrec", str(cm.exception))
    self.assertNotIn("\n", str(cm.exception))


if __name__ == "__main__":
  absltest.main()
