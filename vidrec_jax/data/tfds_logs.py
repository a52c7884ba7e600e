"""TFDS builder for logged interactions (MovieLens, a folder of videos + logs, ...), written as
ArrayRecord without TensorFlow.

Three builder configs share one builder: `interactions` (splits train / valid / test: one record
per interaction, with `order`, its rank in the chronological order of the whole log, ties kept
in input order), `videos` (split `catalog`: one record per item: its raw id, video path, title,
content type, genres and publish time) and `users` (split `users`: each user's raw id). Times
are integer seconds, stored exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from vidrec_jax.data import tfds_io

NAME = "vidrec_logs"
VERSION = "1.0.0"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass
class LogTables:
  """A cleaned log: dense ids, the items' metadata, and each interaction's split.

  Attributes:
    user_raw: (U,) raw user ids; user u is row u.
    item_raw: (N,) raw item ids; video id v is row v.
    title, content_type, genres, path: (N,) str item metadata ('' when absent).
    publish_time: (N,) int64 seconds.
    user, item, timestamp: one entry per interaction, in chronological order (`order` = index).
    split: (num interactions,) 0 train, 1 valid, 2 test.
  """

  user_raw: np.ndarray
  item_raw: np.ndarray
  title: np.ndarray
  content_type: np.ndarray
  genres: np.ndarray
  path: np.ndarray
  publish_time: np.ndarray
  user: np.ndarray
  item: np.ndarray
  timestamp: np.ndarray
  split: np.ndarray


class VidrecLogs(tfds.core.GeneratorBasedBuilder):
  """Interactions, item table and user table of one log dataset."""

  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="interactions", description="logged interactions"),
      tfds.core.BuilderConfig(name="videos", description="item table"),
      tfds.core.BuilderConfig(name="users", description="user table"),
  ]

  def __init__(self, *, tables: LogTables | None = None, **kwargs):
    self._tables = tables
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    int64 = tfds.features.Scalar(dtype=np.int64)
    text = tfds.features.Text()
    if self.builder_config.name == "interactions":
      features = dict(user_id=int64, video_id=int64, timestamp=int64, order=int64)
    elif self.builder_config.name == "videos":
      features = dict(video_id=int64, raw_id=text, path=text, title=text, content_type=text,
                      genres=text, publish_time=int64)
    else:
      features = dict(user_id=int64, raw_id=text)
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    del dl_manager
    if self._tables is None:
      raise ValueError("VidrecLogs builds only from LogTables")
    name = self.builder_config.name
    splits = {"interactions": SPLITS, "videos": ("catalog",), "users": ("users",)}[name]
    return {s: self._generate_examples(s) for s in splits}

  def _generate_examples(self, split: str):
    if split == "catalog":
      yield from self._videos()
    elif split == "users":
      yield from self._users()
    else:
      yield from self._interactions(SPLITS.index(split))

  def _interactions(self, split: int):
    t = self._tables
    for i in np.flatnonzero(t.split == split):
      yield int(i), dict(user_id=int(t.user[i]), video_id=int(t.item[i]),
                         timestamp=int(t.timestamp[i]), order=int(i))

  def _videos(self):
    t = self._tables
    for v in range(len(t.item_raw)):
      yield v, dict(video_id=v, raw_id=str(t.item_raw[v]), path=str(t.path[v]),
                    title=str(t.title[v]), content_type=str(t.content_type[v]),
                    genres=str(t.genres[v]), publish_time=int(t.publish_time[v]))

  def _users(self):
    for u, raw in enumerate(self._tables.user_raw):
      yield u, dict(user_id=u, raw_id=str(raw))


def builder(data_dir: str, config: str, tables: LogTables | None = None) -> VidrecLogs:
  return VidrecLogs(config=config, data_dir=data_dir, tables=tables)


def write(data_dir: str, tables: LogTables) -> None:
  tfds_io.write(data_dir, NAME, VERSION,
                [builder(data_dir, c, tables) for c in ("interactions", "videos", "users")])


def open_split(data_dir: str, config: str, split: str):
  """One split's records (datasets/schema.py `Split`, its columns stored), or a DataError."""
  return tfds_io.open_split(data_dir, NAME, VERSION, config, split, builder,
                            "it is written on the first run that owns data_dir, or with "
                            "--mode=generate")
