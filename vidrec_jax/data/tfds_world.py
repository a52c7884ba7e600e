"""TFDS builder for the synthetic world, written as ArrayRecord without TensorFlow.

Two builder configs share one builder: `impressions` (splits train / valid / test, one record per
logged impression, with the oracle's click probability) and `videos` (split `catalog`, one
record per video with its file name, title, content type, publish time and latent factors).
Videos themselves are real files under `<data_dir>/videos/`, decoded with PyAV at train time.

Written through data/tfds_io.py, so the record files are byte-for-byte reproducible.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from vidrec_jax.data import tfds_io
from vidrec_jax.data import world as world_lib

NAME = "vidrec_world"
VERSION = "1.1.0"  # 1.1.0: videos carry publish_time

_IMPRESSION_FIELDS = {
    "user_id": np.int64, "video_id": np.int64, "timestamp": np.float64, "position": np.int64,
    "click": np.int64, "watch_time": np.float32, "like": np.int64, "oracle_prob": np.float32,
    "cold": np.int64,
}
_VIDEO_INT_FIELDS = ("video_id", "topic", "palette", "shape", "texture", "direction", "speed",
                     "rotation", "num_frames", "content_type", "cold")


class VidrecWorld(tfds.core.GeneratorBasedBuilder):
  """Impressions and video table of one generated world."""

  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="impressions", description="logged impressions"),
      tfds.core.BuilderConfig(name="videos", description="video table"),
  ]

  def __init__(self, *, world: world_lib.World | None = None, **kwargs):
    self._world = world
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    if self.builder_config.name == "impressions":
      features = {k: tfds.features.Scalar(dtype=v) for k, v in _IMPRESSION_FIELDS.items()}
    else:
      features = {k: tfds.features.Scalar(dtype=np.int64) for k in _VIDEO_INT_FIELDS}
      features["publish_time"] = tfds.features.Scalar(dtype=np.float32)
      features["filename"] = tfds.features.Text()
      features["title"] = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._world is None:
      raise ValueError("VidrecWorld builds only from a World object; use data.generate.generate()")
    if self.builder_config.name == "impressions":
      return {s: self._generate_examples(s) for s in world_lib.SPLITS}
    return {"catalog": self._generate_examples("catalog")}

  def _generate_examples(self, split: str):
    if split == "catalog":
      yield from self._videos()
      return

    rows = self._world.split_impressions(split)
    for i in range(len(rows["user_id"])):
      yield i, {k: rows[k][i] for k in _IMPRESSION_FIELDS}

  def _videos(self):
    for v in self._world.videos:
      rec = {k: int(getattr(v, k)) for k in _VIDEO_INT_FIELDS}
      rec.update(filename=v.filename, title=v.title, publish_time=np.float32(v.publish_time))
      yield v.video_id, rec


def builder(data_dir: str, config: str, world: world_lib.World | None = None) -> VidrecWorld:
  return VidrecWorld(config=config, data_dir=data_dir, world=world)



def write(data_dir: str, world: world_lib.World) -> None:
  """Writes the world's impressions and video table as ArrayRecord under `data_dir`."""
  tfds_io.write(data_dir, NAME, VERSION,
                [builder(data_dir, name, world) for name in ("impressions", "videos")])


_HINT = "generate it with --mode=generate, or set config.data.data_dir to a generated world"


def open_source(data_dir: str, config: str, split: str):
  """One split's data source, or a one-line DataError."""
  return tfds_io.open_source(data_dir, NAME, VERSION, config, split, builder, _HINT)


def open_split(data_dir: str, config: str, split: str):
  """One split's records (datasets/schema.py `Split`, its columns stored), or a DataError."""
  return tfds_io.open_split(data_dir, NAME, VERSION, config, split, builder, _HINT)
