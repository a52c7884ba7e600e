"""The one schema every dataset is read into: a catalog of videos and splits of interactions.

* `Catalog`: one row per video, row = video id (0..N-1): the path of its video file ('' when the
  dataset has none), title, content type, publish time, and whether it is cold-start, which is
  derived from the publish time for any dataset: a video published at or after the end of the
  training period (`RecDataset.train_end`) can never appear in training.
* `Split`: the records of one split (train / valid / test): `user_id`, `video_id`, `timestamp`,
  the dataset's declared label columns and any extra columns it has (`position`,
  `oracle_prob`, ...), read by index or as whole columns.
* `RecDataset`: the catalog, the splits, the declared label columns and the capabilities that
  evaluators and models may rely on (`CAPABILITIES`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from typing import Any, Mapping

import numpy as np
from absl import logging

# What a dataset can declare; consumers check `dataset.has(...)` instead of the dataset's name.
ORACLE = "oracle"  # records carry `oracle_prob`, the true click probability of the pair
VIDEO_FILES = "video_files"  # catalog paths point to real video files
IMPRESSIONS = "impressions"  # records are logged exposures with positive and negative labels
POSITIONS = "positions"  # records carry `position`, the slot the video was shown in
CAPABILITIES = (ORACLE, VIDEO_FILES, IMPRESSIONS, POSITIONS)


class DataError(ValueError):
  """A missing or unusable dataset; the message is one line naming the path."""


def strings(values: np.ndarray) -> np.ndarray:
  """A str array of a stored text column, whose values come back as UTF-8 bytes (TFDS) or as
  str; invalid UTF-8 raises (titles, which may hold it, go through text_clean.decode_utf8)."""
  return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in values])


def cold_start(publish_time: np.ndarray, train_end: float) -> np.ndarray:
  """Videos published at or after `train_end` (the first moment after the training period)."""
  return np.asarray(publish_time, np.float64) >= train_end


@dataclasses.dataclass(frozen=True)
class Catalog:
  """The video table, indexed by video id."""

  paths: np.ndarray  # str: the video file of each video, '' when there is none
  title: np.ndarray  # str
  content_type: np.ndarray  # str, e.g. movie / series / news
  publish_time: np.ndarray  # float64 seconds, on the clock of the records' timestamps
  cold: np.ndarray  # bool: published at or after the end of the training period
  extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)  # dataset-specific
  # float32 seconds: each video's length, for datasets that know it (DatasetSource.durations)
  duration: np.ndarray | None = None

  def __post_init__(self):
    n = len(self.paths)
    for f in ("title", "content_type", "publish_time", "cold", "duration"):
      if getattr(self, f) is not None and len(getattr(self, f)) != n:
        raise DataError(f"catalog column {f} has {len(getattr(self, f))} rows, paths {n}")

  def __len__(self) -> int:
    return len(self.paths)

  def path(self, video_id: int) -> str:
    return str(self.paths[video_id])

  @functools.cached_property
  def filename(self) -> np.ndarray:
    """The base name of each video's file (what logs and reports name)."""
    return np.array([os.path.basename(p) for p in self.paths])


class Split:
  """One split's records: random access by index (Grain reads rows of it), or whole columns.

  With `column_dir` (a folder inside the dataset's own directory, which is built once and never
  rewritten), the first process to read the columns stores them there as .npy files, and every
  later read maps them from disk instead of decoding every record again: at 20,000 videos the
  decode took minutes in each phase, and mapped columns are shared by the processes of a
  machine rather than copied. Where the folder cannot be written, the columns are decoded each
  time, as without it."""

  def __init__(self, name: str, source: Any, column_dir: str | None = None):
    self.name, self.source, self.column_dir = name, source, column_dir

  def __len__(self) -> int:
    return len(self.source)

  def records(self, indices) -> list[dict[str, Any]]:
    return self.source.__getitems__([int(i) for i in indices])

  COLUMN_CHUNK = 65_536  # records decoded at a time into `columns`

  @functools.cached_property
  def columns(self) -> dict[str, np.ndarray]:
    """Every record, read once into numpy columns. Records are decoded a chunk at a time, so
    their Python objects (hundreds of bytes a record) never exist all at once: the peak is the
    columns themselves plus one chunk."""
    n = len(self.source)
    if self.column_dir is not None:
      stored = _mapped_columns(self.column_dir, n)
      if stored is not None:
        return stored
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, self.COLUMN_CHUNK):
      recs = self.records(range(start, min(n, start + self.COLUMN_CHUNK)))
      for k in recs[0]:
        parts.setdefault(k, []).append(np.asarray([r[k] for r in recs]))
    cols = {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in parts.items()}
    if self.column_dir is not None and n:
      _store_columns(self.column_dir, cols, n)
    return cols


_COLUMNS_MANIFEST = "columns.json"


def _mapped_columns(folder: str, rows: int) -> dict[str, np.ndarray] | None:
  """The columns stored in `folder`, mapped read-only; None when there are none, or they were
  stored for another number of records."""
  try:
    with open(os.path.join(folder, _COLUMNS_MANIFEST)) as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if manifest.get("rows") != rows:
    return None
  return {k: np.load(os.path.join(folder, f"{i}.npy"), mmap_mode="r")
          for i, k in enumerate(manifest["columns"])}


def _store_columns(folder: str, cols: Mapping[str, np.ndarray], rows: int) -> None:
  """Writes the columns into a temporary folder beside `folder` and renames it into place: a
  reader sees all of them or none, and of two writers the first to finish wins."""
  if any(v.dtype == object for v in cols.values()):
    return  # not mappable
  parent = os.path.dirname(folder)
  tmp = None
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".columns-", dir=parent)
    for i, v in enumerate(cols.values()):
      np.save(os.path.join(tmp, f"{i}.npy"), v)
    with open(os.path.join(tmp, _COLUMNS_MANIFEST), "w") as f:
      json.dump({"rows": rows, "columns": list(cols)}, f)
    os.rename(tmp, folder)
    tmp = None
  except OSError as e:
    if not os.path.isdir(folder):  # another writer's rename is not a failure
      logging.info("columns not stored in %s (%s); they are decoded on each read", folder, e)
  finally:
    if tmp is not None:
      shutil.rmtree(tmp, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class RecDataset:
  """A catalog, its splits of interactions, and what the dataset declares about itself.

  Attributes:
    name: the registered name.
    catalog: the video table.
    splits: split name -> records; 'train' is always present.
    label_columns: the label columns the records carry (e.g. click, watch_time, like); a head
      whose labels the dataset lacks is refused at config validation.
    capabilities: a subset of CAPABILITIES.
    train_end: the first moment after the training period, on the timestamps' clock; videos
      published at or after it are cold-start.
    users: the raw id of each user (row = user id), for datasets whose users have names.
  """

  name: str
  catalog: Catalog
  splits: Mapping[str, Split]
  label_columns: tuple[str, ...]
  capabilities: frozenset[str]
  train_end: float
  users: np.ndarray | None = None

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise DataError(f"dataset {self.name!r} has no split {name!r}; it has "
                      f"{', '.join(self.splits)}")
    return self.splits[name]

  def has(self, capability: str) -> bool:
    return capability in self.capabilities
