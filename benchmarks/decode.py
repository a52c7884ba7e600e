"""Decode throughput on the files of a generated world: raw PyAV vs the Grain pipeline.

  python benchmarks/decode.py --data_dir=/tmp/vidrec_demo/data [--config=configs/demo.py:conv]

Prints frames/s of (1) raw PyAV decoding of every file to RGB at native size, (2) the same at the
model's frame size (resize inside PyAV), (3) the pipeline's ClipSampler with its cache off (every
example decodes its file), and (4) the training pipeline's examples/s and decoded frames/s with
its configured workers and cache.
"""

import os
import tempfile
import time

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/demo.py:conv", "Config.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "A generated world.", required=True)
_BATCHES = flags.DEFINE_integer("batches", 60, "Training batches to time.")
_WARMUP = flags.DEFINE_integer("warmup", 40, "Training batches before timing (fills the caches).")


def main(_):
  import av  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data import video_io  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data.clips import ClipSampler  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data.clips import PixelFrames  # pylint: disable=g-import-not-at-top
  from vidrec_jax import run_spec  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train.context import make_context  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train.trainers import TRAINERS  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  with config.unlocked():
    config.data.data_dir = _DATA_DIR.value
  ctx = make_context(run_spec.resolve(config), tempfile.mkdtemp(), prepare=False)
  catalog = ctx.dataset.catalog
  paths = [catalog.path(i) for i in range(len(catalog))]
  print(f"av {av.__version__}, {len(paths)} files, cpu count {os.cpu_count()}")

  for label, size in (("raw PyAV decode, native size", None),
                      (f"raw PyAV decode + resize to {config.data.frame_size}",
                       config.data.frame_size)):
    t, n = time.perf_counter(), 0
    for p in paths:
      n += len(video_io.decode_video(p, size))
    dt = time.perf_counter() - t
    print(f"{label:48s} {n / dt:10.0f} frames/s ({n} frames, {dt:.2f} s)")

  d = config.data
  loader = ClipSampler(PixelFrames(catalog, d.frame_size, d.normalization, cache_videos=0,
                                   max_frames=d.cache_frames),
                       ("frames", "mask", "motion"), d.num_frames)
  rng = np.random.default_rng(0)
  t, n = time.perf_counter(), 0
  for i in range(len(catalog)):
    loader.clip(i, rng)
    n += int(catalog.extra["num_frames"][i])
  dt = time.perf_counter() - t
  print(f"{'ClipSampler (decode+TSN+normalise), no cache':48s} {n / dt:10.0f} frames decoded/s, "
        f"{len(catalog) / dt:.0f} clips/s")

  it = TRAINERS.get(config.train.trainer)(ctx).batches(0, None)  # the trainer's own stream
  for _ in range(_WARMUP.value):  # worker start-up and the first decode of each video
    next(it)
  t, clips, impressions, frames = time.perf_counter(), 0, 0, 0
  for _ in range(_BATCHES.value):
    b = next(it)
    clips += len(b["valid"])
    impressions += int(b["weight"].sum())
    frames += int(b["mask"].sum())
  dt = time.perf_counter() - t
  label = f"train pipeline (workers={config.data.num_workers}, cache={config.data.cache_videos})"
  print(f"{label:48s} "
        f"{clips / dt:10.0f} clips/s, {impressions / dt:.0f} impressions/s, "
        f"{frames / dt:.0f} sampled frames/s")


if __name__ == "__main__":
  app.run(main)
