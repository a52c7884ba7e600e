"""The offline optical-flow cache (`model.frame_encoder.flow_source='cache'`, or the feature
whitening's `whiten_flow`): the flow from every decoded frame of every catalog video to the next,
estimated once by data/flow.py and written in the feature cache's format (data/features.py:
ArrayRecord shards of `.npz` records holding `video_id`, `frame_index` and, as `features`, what
the model reads of it, `meta.json` last). The cache stores what its reader needs (`form`):
- 'fields': the fields (n, S, S, 2) float32, for a flow stream (S² · 8 bytes a frame);
- 'histograms': only each frame's motion histograms (n, 21) float32 (data/motion.py), all the
  whitening reads: 84 bytes a frame, 390 times less than 64² fields.
A fields cache serves a histograms reader too (the histograms are computed on read).

Training from it reads each sampled frame's field (the `flow` clip op) instead of estimating it
in the train step or in the loader. The frames are decoded as the pixel pipeline decodes them
(data.frame_size, up to data.cache_frames frames as data.frame_selection picks them), so the
fields line up with the frames the RGB stream sees. An undecodable video is reported by path,
counted in the metadata and skipped; the loader then estimates its flow itself (and finds it
undecodable too).
"""

from __future__ import annotations

import os

import numpy as np
import tqdm
from absl import logging

from vidrec_jax import files
from vidrec_jax.data import features
from vidrec_jax.data import motion
from vidrec_jax.data import ops
from vidrec_jax.data import video_io
from vidrec_jax.data.datasets import Catalog
from vidrec_jax.run_spec import DataSpec

ESTIMATOR = "coarse_to_fine_lk/1"  # data/flow.py estimate_flow, its defaults
FORMS = ("fields", "histograms")


def shard_name(index: int, count: int) -> str:
  """Process `index` of `count`'s shard (one process: flow-00000-of-00001.array_record)."""
  return f"flow-{index:05d}-of-{count:05d}.array_record"


def expected_meta(data: DataSpec) -> dict:
  """Settings a flow cache must have been written with to serve these data settings."""
  return dict(kind="flow", estimator=ESTIMATOR, frame_size=data.frame_size,
              max_frames=data.cache_frames, selection=data.frame_selection)


def check(cache_dir: str, data: DataSpec, form: str) -> dict:
  """The metadata of a finished flow cache that serves `data` and a reader of `form`, else a
  one-line CacheError (a cache written before forms existed holds fields)."""
  meta = features.check_meta(cache_dir, expected_meta(data))
  have = meta.get("form", "fields")
  if form == "fields" and have != "fields":
    raise features.CacheError(f"flow cache {cache_dir} holds {have}, the model reads the flow "
                              "fields; delete it or point data.flow_cache elsewhere")
  return meta


def ensure(catalog: Catalog, data: DataSpec, cache_dir: str, form: str) -> dict:
  """The metadata of a flow cache that serves `form`, written first unless one is there."""
  try:
    return check(cache_dir, data, form)
  except features.CacheError:
    return write(catalog, data, cache_dir, form=form)


def write(catalog: Catalog, data: DataSpec, cache_dir: str, show_progress: bool = True,
          form: str = "fields") -> dict:
  """Estimates the flow of every catalog video at `data`'s frame size and cached frame count
  and writes it in `form` (FORMS), in one process; returns the metadata written. Several
  processes split the videos instead (train/extract.py `extract_flow`: `begin`, a
  `write_shard` each, `finish`)."""
  begin(cache_dir, form)
  failed = write_shard(catalog, data, cache_dir, form, 0, 1, show_progress)
  return finish(catalog, data, cache_dir, form, 1, failed)


def begin(cache_dir: str, form: str) -> None:
  """Readies `cache_dir` for a (re)write: a rewrite is unfinished until its metadata is back."""
  if form not in FORMS:
    raise ValueError(f"flow cache form {form!r}; allowed: {', '.join(FORMS)}")
  os.makedirs(cache_dir, exist_ok=True)
  meta_path = os.path.join(cache_dir, features.META)
  if os.path.exists(meta_path):
    os.remove(meta_path)


def write_shard(catalog: Catalog, data: DataSpec, cache_dir: str, form: str, index: int,
                count: int, show_progress: bool = True) -> int:
  """Shard `index` of `count`: the flow of videos index, index + count, ...; returns how many
  of them could not be decoded (each reported by path and skipped)."""
  d = data
  failed = 0
  shard = os.path.join(cache_dir, shard_name(index, count))
  with files.atomic_path(shard) as tmp:
    writer = features.ShardWriter(tmp)
    for vid in tqdm.tqdm(range(index, len(catalog), count), desc="flow cache",
                         disable=not show_progress, mininterval=2.0):
      path = catalog.path(vid)
      try:
        if not path:
          raise video_io.VideoDecodeError(f"video {vid} has no video file")
        frames = video_io.decode_video(path, d.frame_size, d.cache_frames, d.frame_selection)
      except video_io.VideoDecodeError as e:
        failed += 1
        logging.warning("flow cache: skipping undecodable video %s", e)
        continue
      field = ops.video_flow(frames)
      writer.write(vid, np.arange(len(frames)),
                   field if form == "fields" else motion.flow_histograms(field))
    writer.close(final_path=shard)
  return failed


def finish(catalog: Catalog, data: DataSpec, cache_dir: str, form: str, count: int,
           failed: int) -> dict:
  """Writes the metadata of a cache whose `count` shards are all written (`failed` videos
  skipped in all) and returns it."""
  meta = dict(expected_meta(data), form=form, shards=[shard_name(i, count) for i in range(count)],
              videos=len(catalog), failed=failed)
  features.write_meta(cache_dir, meta)
  logging.info("flow cache: %d videos (%d undecodable) in %s", len(catalog) - failed, failed,
               cache_dir)
  return meta
