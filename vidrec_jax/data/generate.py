"""Writes a synthetic world to disk once: real video files plus the TFDS/ArrayRecord datasets.

Generation is reproducible byte for byte: the same world config gives the same video files and
the same record files (tested), in any process.
"""

from __future__ import annotations

import json
import os

import tqdm
from absl import logging

from vidrec_jax.data import build
from vidrec_jax.data import render
from vidrec_jax.data import tfds_world
from vidrec_jax.data import video_io
from vidrec_jax.data import world as world_lib
from vidrec_jax.files import write_json

_STAMP = "world_config.json"


def _stamp(world_config: world_lib.WorldConfig) -> dict:
  """What a finished world records about itself: its config and the record format version."""
  return {"world": world_config.settings(), "tfds_version": tfds_world.VERSION}


def generate(data_dir: str, world_config: world_lib.WorldConfig,
             show_progress: bool = True) -> world_lib.World:
  """Generates the world into `data_dir` (videos/, vidrec_world/ TFDS datasets, a config stamp,
  written last). A run's data dir is built through `ensure` instead, which never overwrites."""
  stamp = os.path.join(data_dir, _STAMP)
  if os.path.exists(stamp):
    os.remove(stamp)
  world = _write(data_dir, world_config, show_progress)
  write_json(stamp, _stamp(world_config))
  return world


def _write(data_dir: str, world_config: world_lib.WorldConfig,
           show_progress: bool = True) -> world_lib.World:
  """The world's videos and records in `data_dir` (no stamp)."""
  world = world_lib.World(world_config)
  video_dir = os.path.join(data_dir, "videos")
  os.makedirs(video_dir, exist_ok=True)
  for v in tqdm.tqdm(world.videos, desc="render+encode videos", disable=not show_progress,
                     mininterval=2.0):
    frames = render.render(v, world_config.resolution, world_config.noise, world_config.seed)
    video_io.write_video(os.path.join(video_dir, v.filename), frames, world_config.fps)
  tfds_world.write(data_dir, world)
  n = world.impressions["split"]
  logging.info("world: %d users, %d videos (%d cold), impressions train/valid/test = %d/%d/%d",
               world_config.num_users, len(world.videos), sum(v.cold for v in world.videos),
               (n == 0).sum(), (n == 1).sum(), (n == 2).sum())
  return world


def ensure(data_dir: str, world_config: world_lib.WorldConfig) -> None:
  """The world of `world_config` in `data_dir`: reused when `data_dir` holds it, built when it
  does not exist, else refused in one line naming the settings that differ; never overwritten
  (data/build.py)."""
  build.build_once(data_dir, _STAMP, json.loads(json.dumps(_stamp(world_config))),
                   lambda directory: _write(directory, world_config),
                   {"world.": "data.dataset.", "tfds_version": "record format"})
