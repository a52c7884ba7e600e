"""The synthetic world written as a MicroLens release folder (`--mode=generate
--config.data.dataset.layout=microlens`), read back by the `microlens` dataset exactly as a
downloaded release is (data/datasets/microlens.py):

  DIR/MicroLens-<size>_pairs.csv       `user,item,timestamp` header, then each user's first
                                       click on each video, in time order (timestamps in
                                       milliseconds)
  DIR/MicroLens-<size>_title_en.csv    no header: `item,title`
  DIR/MicroLens-<size>_videos/<item>.mp4
  DIR/MicroLens-<size>_covers/<item>.jpg   each video's middle frame

Ids are 1-based integers, as the release's. `<size>` names the user count as the release does
(`100k` for 100,000 users, else the number). The world's sizes are the dataset section's
(`num_users`, `num_videos`, `slates_per_user`: interactions are the clicks of its slates).
"""

from __future__ import annotations

import json
import os

import numpy as np
import tqdm
from absl import logging

from vidrec_jax import files
from vidrec_jax.data import build
from vidrec_jax.data import render
from vidrec_jax.data import video_io
from vidrec_jax.data import world as world_lib

FOLDER = "microlens"  # under the run's data dir
_STAMP = "world_config.json"  # not a MicroLens name: the reader ignores it
PAIRS = "first click of each user and video"  # what _pairs.csv holds (older folders: every click)


def size_name(num_users: int) -> str:
  """The release's size label for a user count: 100000 -> '100k', 1500 -> '1500'."""
  return f"{num_users // 1000}k" if num_users >= 1000 and num_users % 1000 == 0 else str(num_users)


def _write(folder: str, config: world_lib.WorldConfig, show_progress: bool) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top  (pillow: matplotlib's dependency)
  world = world_lib.World(config)
  prefix = os.path.join(folder, f"MicroLens-{size_name(config.num_users)}")
  videos, covers = prefix + "_videos", prefix + "_covers"
  os.makedirs(videos)
  os.makedirs(covers)
  for v in tqdm.tqdm(world.videos, desc="render+encode videos", disable=not show_progress,
                     mininterval=2.0):
    frames = render.render(v, config.resolution, config.noise, config.seed)
    item = v.video_id + 1
    video_io.write_video(os.path.join(videos, f"{item}.mp4"), frames, config.fps)
    with files.atomic_path(os.path.join(covers, f"{item}.jpg")) as tmp:
      Image.fromarray(frames[len(frames) // 2]).save(tmp, quality=90)
  with files.atomic_path(prefix + "_title_en.csv") as tmp, open(tmp, "w", encoding="utf-8") as f:
    for v in world.videos:
      f.write(f"{v.video_id + 1},{v.title}\n")
  imp = world.impressions
  clicked = first_clicks(imp["user_id"], imp["video_id"], imp["click"])
  with files.atomic_path(prefix + "_pairs.csv") as tmp, open(tmp, "w") as f:
    f.write("user,item,timestamp\n")
    for start in range(0, len(clicked), 100_000):
      rows = clicked[start:start + 100_000]
      f.writelines(f"{u + 1},{i + 1},{t}\n" for u, i, t in zip(
          imp["user_id"][rows].tolist(), imp["video_id"][rows].tolist(),
          np.round(imp["timestamp"][rows] * 1000).astype(np.int64).tolist()))
  logging.info("MicroLens layout: %d users, %d videos, %d interactions in %s", config.num_users,
               len(world.videos), len(clicked), folder)


def first_clicks(user: np.ndarray, video: np.ndarray, click: np.ndarray) -> np.ndarray:
  """Rows (in their time order) of each user's first click on each video. A video clicked
  again is not a new pair: under the history-masked full sort, which removes the history's
  videos other than the target, a repeated target would be the one history video left among
  the candidates, so a model that ranks watched videos first would find it without skill."""
  rows = np.flatnonzero(np.asarray(click) > 0)
  key = np.asarray(user, np.int64)[rows] * (int(np.max(video)) + 1) + np.asarray(video)[rows]
  _, first = np.unique(key, return_index=True)
  return rows[np.sort(first)]


def ensure(data_dir: str, config: world_lib.WorldConfig, show_progress: bool = True) -> str:
  """The world of `config` as a MicroLens release folder under `data_dir`; built once, never
  overwritten (data/build.py). Returns the folder."""
  folder = os.path.join(data_dir, FOLDER)
  stamp = json.loads(json.dumps({"world": config.settings(), "layout": "microlens",
                                 "pairs": PAIRS}))
  build.build_once(folder, _STAMP, stamp, lambda d: _write(d, config, show_progress),
                   {"world.": "data.dataset."})
  return folder
