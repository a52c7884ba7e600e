"""Decode throughput on the files of a generated world: raw PyAV vs the Grain pipeline.

  python benchmarks/decode.py --data_dir=/tmp/vidrec_demo/data [--config=configs/demo.py:conv]

Prints frames/s of (1) raw PyAV decoding of every file to RGB at native size, (2) the same at the
model's frame size (resize inside PyAV), (3) the pipeline's ClipLoader with its cache off (every
example decodes its file), and (4) the training pipeline's examples/s and decoded frames/s with
its configured workers and cache.
"""

import os
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
  from vidrec_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data import video_io  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  catalog = pipeline.Catalog.load(_DATA_DIR.value)
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

  loader = pipeline.ClipLoader(catalog, config.data.num_frames, config.data.frame_size,
                               config.data.normalization, cache_videos=0)
  rng = np.random.default_rng(0)
  t, n = time.perf_counter(), 0
  for i in range(len(catalog)):
    loader.clip(i, rng)
    n += int(catalog.num_frames[i])
  dt = time.perf_counter() - t
  print(f"{'ClipLoader (decode+TSN+normalise), no cache':48s} {n / dt:10.0f} frames decoded/s, "
        f"{len(catalog) / dt:.0f} clips/s")

  cols = pipeline.read_columns(pipeline.open_source(_DATA_DIR.value, "impressions", "train"))
  uv = pipeline.Vocab(cols["user_id"], int(cols["user_id"].max()))
  vv = pipeline.Vocab(cols["video_id"], len(catalog) - 1)
  it = iter(pipeline.train_dataset(config, _DATA_DIR.value, catalog, uv, vv, cols["video_id"],
                                   0, 1))
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
