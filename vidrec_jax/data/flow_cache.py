"""The offline optical-flow cache (`model.frame_encoder.flow_source='cache'`): the flow from every
decoded frame of every catalog video to the next, estimated once by data/flow.py and written in
the feature cache's format (data/features.py: ArrayRecord shards of `.npz` records holding
`video_id`, `frame_index` and the fields (n, S, S, 2) float32 as `features`, `meta.json` last).

Training from it reads each sampled frame's field (the `flow` clip op) instead of estimating it
in the train step or in the loader. The frames are decoded as the pixel pipeline decodes them
(data.frame_size, up to data.cache_frames evenly spaced frames), so the fields line up with the
frames the RGB stream sees. An undecodable video is reported by path, counted in the metadata and
skipped; the loader then estimates its flow itself (and finds it undecodable too).
"""

from __future__ import annotations

import os

import numpy as np
import tqdm
from absl import logging
from array_record.python import array_record_module

from vidrec_jax import files
from vidrec_jax.data import features
from vidrec_jax.data import ops
from vidrec_jax.data import video_io
from vidrec_jax.data.datasets import Catalog
from vidrec_jax.run_spec import DataSpec

ESTIMATOR = "coarse_to_fine_lk/1"  # data/flow.py estimate_flow, its defaults
SHARD = "flow-00000-of-00001.array_record"


def expected_meta(data: DataSpec) -> dict:
  """Settings a flow cache must have been written with to serve these data settings."""
  return dict(kind="flow", estimator=ESTIMATOR, frame_size=data.frame_size,
              max_frames=data.cache_frames)


def write(catalog: Catalog, data: DataSpec, cache_dir: str, show_progress: bool = True) -> dict:
  """Estimates and writes the flow of every catalog video at `data`'s frame size and cached
  frame count; returns the metadata written."""
  d = data
  os.makedirs(cache_dir, exist_ok=True)
  meta_path = os.path.join(cache_dir, features.META)
  if os.path.exists(meta_path):
    os.remove(meta_path)  # a rewrite is unfinished until its metadata is back
  failed = 0
  with files.atomic_path(os.path.join(cache_dir, SHARD)) as tmp:
    writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
    for vid in tqdm.tqdm(range(len(catalog)), desc="flow cache", disable=not show_progress,
                         mininterval=2.0):
      path = catalog.path(vid)
      try:
        if not path:
          raise video_io.VideoDecodeError(f"video {vid} has no video file")
        frames = video_io.decode_video(path, d.frame_size, d.cache_frames)
      except video_io.VideoDecodeError as e:
        failed += 1
        logging.warning("flow cache: skipping undecodable video %s", e)
        continue
      writer.write(features.encode_record(vid, np.arange(len(frames)), ops.video_flow(frames)))
    writer.close()
  meta = dict(expected_meta(data), shards=[SHARD], videos=len(catalog), failed=failed)
  features.write_meta(cache_dir, meta)
  logging.info("flow cache: %d videos (%d undecodable) in %s", len(catalog) - failed, failed,
               cache_dir)
  return meta
