"""Grain input pipelines: impressions + PyAV-decoded clips, sharded per JAX process.

Training stream: ArrayRecord source -> per-epoch shuffle -> repeat -> this process's slice of each
global batch -> decode/sample/normalise -> batch -> worker processes (each builds whole
batches).  The slice is taken from the
global example order, so the global batch at step s holds the same examples whatever the number of
processes, and per-example randomness is seeded by the global example index for the same reason.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import grain
import ml_collections
import numpy as np
from absl import logging

from vidrec_jax.data import features
from vidrec_jax.data import ops
from vidrec_jax.data import tfds_world
from vidrec_jax.data import titles as titles_lib
from vidrec_jax.data import video_io


class DataError(ValueError):
  """A missing or unusable dataset; the message is one line naming the path."""


def open_source(data_dir: str, config_name: str, split: str):
  """The TFDS ArrayRecord data source of one split, or a one-line DataError."""
  path = os.path.join(data_dir, tfds_world.NAME, config_name, tfds_world.VERSION)
  if not os.path.isdir(path):
    raise DataError(f"dataset not found: {path} does not exist (generate it with "
                    f"--mode=generate, or set config.data.data_dir to a generated world)")
  try:
    return tfds_world.builder(data_dir, config_name).as_data_source(split)
  except Exception as e:  # noqa: BLE001 - TFDS raises many types; the user needs one line.
    raise DataError(f"dataset at {path} is unreadable for split {split!r}: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def read_columns(source) -> dict[str, np.ndarray]:
  """Reads every record of a source into numpy columns."""
  n = len(source)
  recs = source.__getitems__(list(range(n))) if n else []
  if not recs:
    return {}
  return {k: np.asarray([r[k] for r in recs]) for k in recs[0]}


@dataclasses.dataclass
class Catalog:
  """The video table: file names, lengths, titles and cold-start flags, indexed by video id."""

  video_dir: str
  filename: np.ndarray
  num_frames: np.ndarray
  title: np.ndarray
  cold: np.ndarray

  @classmethod
  def load(cls, data_dir: str) -> "Catalog":
    cols = read_columns(open_source(data_dir, "videos", "catalog"))
    order = np.argsort(cols["video_id"])
    if not np.array_equal(cols["video_id"][order], np.arange(len(order))):
      raise DataError(f"video ids in {data_dir} are not 0..N-1")

    def dec(a):
      return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in a])

    return cls(video_dir=os.path.join(data_dir, "videos"), filename=dec(cols["filename"][order]),
               num_frames=cols["num_frames"][order], title=decode_titles(cols["title"][order]),
               cold=cols["cold"][order].astype(bool))

  def __len__(self) -> int:
    return len(self.filename)

  def path(self, video_id: int) -> str:
    return os.path.join(self.video_dir, self.filename[video_id])


def decode_titles(raw: np.ndarray) -> np.ndarray:
  """Titles as str: bytes that are not valid UTF-8 are decoded with U+FFFD replacements, and
  the videos concerned are reported (by id) instead of failing the whole catalog."""
  out, bad = [], []
  for i, x in enumerate(raw):
    if isinstance(x, bytes):
      try:
        x = x.decode()
      except UnicodeDecodeError:
        bad.append(i)
        x = x.decode(errors="replace")
    out.append(str(x))
  if bad:
    logging.warning("%d titles are not valid UTF-8 (invalid bytes replaced by U+FFFD): videos %s",
                    len(bad), ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else ""))
  return np.array(out)


class Vocab:
  """Maps raw ids to embedding rows; ids never seen in training map to the OOV row (= size)."""

  def __init__(self, known_ids: np.ndarray, max_id: int):
    known = np.unique(np.asarray(known_ids))
    self.size = len(known)
    self.table = np.full(max_id + 1, self.size, np.int32)
    self.table[known] = np.arange(self.size, dtype=np.int32)

  def __call__(self, ids):
    ids = np.asarray(ids)
    out = np.full(ids.shape, self.size, np.int32)
    ok = (ids >= 0) & (ids < len(self.table))
    out[ok] = self.table[ids[ok]]
    return out


class ClipLoader:
  """Decodes clips with PyAV, samples TSN frames and keeps a per-process LRU of decoded videos.

  A file that cannot be decoded is reported by path once, and its examples come back with
  `valid=0` (zero frames), so batches keep a static shape and the step gives them zero weight.
  """

  def __init__(self, catalog: Catalog, num_segments: int, frame_size: int, normalization: str,
               cache_videos: int, motion: bool = False):
    self.catalog = catalog
    self.num_segments = num_segments
    self.frame_size = frame_size
    self.normalization = normalization
    self.cache_videos = cache_videos
    self.motion = motion
    self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
    self._bad: set[int] = set()

  def __getstate__(self):  # worker processes start with an empty cache
    d = dict(self.__dict__)
    d["_cache"] = collections.OrderedDict()
    return d

  def _frames(self, video_id: int) -> np.ndarray | None:
    if video_id in self._cache:
      self._cache.move_to_end(video_id)
      return self._cache[video_id]
    if video_id in self._bad:
      return None
    try:
      frames = video_io.decode_video(self.catalog.path(video_id), self.frame_size)
    except video_io.VideoDecodeError as e:
      self._bad.add(video_id)
      logging.warning("skipping undecodable video %s", e)
      return None
    if self.cache_videos > 0:
      self._cache[video_id] = frames
      if len(self._cache) > self.cache_videos:
        self._cache.popitem(last=False)
    return frames

  def clip(self, video_id: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    if self.num_segments == 0:  # a model without a content tower: nothing to decode
      return {"valid": np.int32(1)}
    return self._clip(video_id, rng)

  def _clip(self, video_id: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    """frames float32 (K, S, S, 3), mask float32 (K,), valid int32 scalar, and with `motion`
    the TSN RGB difference: each sampled frame's difference to the next frame (K, S, S, 3)."""
    k, s = self.num_segments, self.frame_size
    frames = self._frames(int(video_id))
    if frames is None:
      out = {"frames": np.zeros((k, s, s, 3), np.float32), "mask": np.zeros(k, np.float32),
             "valid": np.int32(0)}
      if self.motion:
        out["motion"] = np.zeros((k, s, s, 3), np.float32)
      return out
    idx, mask = video_io.tsn_indices(len(frames), k, rng)
    # No mirroring augmentation: it would turn left-moving videos into right-moving ones, and
    # motion direction is content that users have tastes for.
    out = {"frames": ops.normalize(frames[idx], self.normalization), "mask": mask,
           "valid": np.int32(1)}
    if self.motion:
      nxt = frames[np.minimum(idx + 1, len(frames) - 1)]
      diff = ops.normalize(nxt, self.normalization) - out["frames"]
      out["motion"] = diff * mask[:, None, None, None]
    return out


class GlobalBatchSlice(grain.MapDataset):
  """This process's rows of each global batch, tagged with their global example index."""

  def __init__(self, parent: grain.MapDataset, global_batch: int, process_index: int,
               process_count: int):
    super().__init__(parent)
    if global_batch % process_count:
      raise ValueError(f"data.batch_size={global_batch} must be divisible by the process count "
                       f"{process_count}")
    self._global = global_batch
    self._local = global_batch // process_count
    self._offset = process_index * self._local

  def __len__(self) -> int:
    return len(self._parent) // self._global * self._local

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    g = (index // self._local) * self._global + self._offset + index % self._local
    return g, self._parent[g]


def group_by_clip(video_ids: np.ndarray, per_clip: int, seed: int) -> np.ndarray:
  """Groups impression rows by video into chunks of `per_clip` rows, padded with -1.

  One decoded and encoded clip then serves several logged impressions of that video (several
  viewers), so the costly content tower runs once per chunk instead of once per impression.

  Returns:
    int64 (num_chunks, per_clip) row indices in a seeded random order within each video.
  """
  rng = np.random.default_rng(seed)
  order = np.argsort(video_ids, kind="stable")
  bounds = np.flatnonzero(np.diff(video_ids[order])) + 1
  chunks = []
  for rows in np.split(order, bounds):
    rows = rng.permutation(rows)
    for a in range(0, len(rows), per_clip):
      chunk = np.full(per_clip, -1, np.int64)
      part = rows[a:a + per_clip]
      chunk[:len(part)] = part
      chunks.append(chunk)
  return np.stack(chunks) if chunks else np.zeros((0, per_clip), np.int64)


class GroupedSource:
  """Random-access source whose element i is one video with its chunk of impressions."""

  def __init__(self, source, groups: np.ndarray):
    self.source, self.groups = source, groups

  def __len__(self) -> int:
    return len(self.groups)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    rows = self.groups[i]
    real = rows[rows >= 0]
    recs = self.source.__getitems__([int(r) for r in real])
    n, m = len(recs), len(rows)

    def col(key, dtype):
      out = np.zeros(m, dtype)
      out[:n] = [r[key] for r in recs]
      return out

    return {"video_id": np.int64(recs[0]["video_id"]), "user_id": col("user_id", np.int64),
            "position": col("position", np.int32), "click": col("click", np.float32),
            "watch_time": col("watch_time", np.float32), "like": col("like", np.float32),
            "weight": (np.arange(m) < n).astype(np.float32)}


class ImpressionExample(grain.transforms.Map):
  """(global index, video with its impressions) -> example: the sampled clip, and per-impression
  users, positions and labels of shape (impressions_per_clip,) with a `weight` mask.

  With `titles`, the video's title inputs; with `query_view`, a second, independently sampled
  clip of the same video under `query_*` keys (the visual-query task's positive pair)."""

  def __init__(self, loader: ClipLoader, user_vocab: Vocab, video_vocab: Vocab, seed: int,
               train: bool, titles: titles_lib.TitleInputs | None = None,
               query_view: bool = False):
    self.loader, self.user_vocab, self.video_vocab = loader, user_vocab, video_vocab
    self.seed, self.train = seed, train
    self.titles, self.query_view = titles, query_view

  def map(self, element):
    g, rec = element
    rng = np.random.default_rng([self.seed, g]) if self.train else None
    ex = self.loader.clip(rec["video_id"], rng)
    if self.query_view:
      ex.update({f"query_{k}": v for k, v in self.loader.clip(rec["video_id"], rng).items()})
    if self.titles is not None:
      ex.update(self.titles(rec["video_id"]))
    ex.update(
        index=np.int64(g), video_id=rec["video_id"], user=self.user_vocab(rec["user_id"]),
        video=self.video_vocab(rec["video_id"]), position=rec["position"], click=rec["click"],
        watch_time=rec["watch_time"], like=rec["like"], weight=rec["weight"])
    return ex


def _num_segments(config: ml_collections.ConfigDict) -> int:
  """Frames to sample per clip; 0 when the model has no content tower (ID-only)."""
  return 0 if config.model.frame_encoder.name == "none" else config.data.num_frames


def uses_feature_cache(config: ml_collections.ConfigDict) -> bool:
  m = config.model
  return m.frame_encoder.name == "backbone" and bool(m.backbone.from_cache)


def _loader(config: ml_collections.ConfigDict, catalog: Catalog, features_dir: str | None,
            cache_videos: int):
  """Pixels (PyAV ClipLoader) or the backbone feature cache (FeatureLoader)."""
  d = config.data
  if uses_feature_cache(config):
    if not features_dir:
      raise DataError("model.backbone.from_cache=True but no feature cache directory was given")
    meta = features.read_meta(features_dir)
    adjacent = config.model.frame_encoder.temporal_difference == "adjacent"
    return features.FeatureLoader(features_dir, _num_segments(config), int(meta["dim"]),
                                  adjacent)
  return ClipLoader(catalog, _num_segments(config), d.frame_size, d.normalization, cache_videos,
                    d.motion)


def _read_options(d: ml_collections.ConfigDict) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=d.read_threads, prefetch_buffer_size=d.prefetch_batches)


def train_dataset(config: ml_collections.ConfigDict, data_dir: str, catalog: Catalog,
                  user_vocab: Vocab, video_vocab: Vocab, train_video_ids: np.ndarray,
                  process_index: int, process_count: int, features_dir: str | None = None,
                  start_batch: int = 0, titles: titles_lib.TitleInputs | None = None
                  ) -> grain.IterDataset:
  """The infinite training stream of local batches for this process, from global batch
  `start_batch` on.

  Batch i is a pure function of i (and the config), whatever the process count, so resuming at
  the checkpoint's step is exact without any per-process iterator state.

  A batch holds data.batch_size / process_count clips, each with data.impressions_per_clip
  impressions of its video.  `train_video_ids` is the video id of every train record, in record
  order (the caller has read it already to build the vocabularies).  Clips come from pixels, or
  from the feature cache in `features_dir` when the config trains from cached features; titles
  from `titles` (see `title_inputs`) when the model reads them.
  """
  d = config.data
  src = open_source(data_dir, "impressions", "train")
  if len(train_video_ids) != len(src):
    raise DataError(f"{len(train_video_ids)} train video ids given for {len(src)} train records")
  groups = group_by_clip(np.asarray(train_video_ids), d.impressions_per_clip, d.shuffle_seed)
  ds = grain.MapDataset.source(GroupedSource(src, groups))
  ds = ds.shuffle(seed=d.shuffle_seed).repeat(None)
  ds = GlobalBatchSlice(ds, d.batch_size, process_index, process_count)
  loader = _loader(config, catalog, features_dir, d.cache_videos)
  ds = ds.map(ImpressionExample(loader, user_vocab, video_vocab, d.shuffle_seed, train=True,
                                titles=titles,
                                query_view="visual_query" in config.model.tasks))
  # Batches are formed before the worker split, so each worker builds whole batches and the
  # stream is the same for any number of workers.
  ds = ds.batch(d.batch_size // process_count, drop_remainder=True)[start_batch:]
  # Elements are whole batches: read a few ahead, not Grain's default of hundreds.
  it = ds.to_iter_dataset(_read_options(d))
  if d.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.num_workers,
                                                     per_worker_buffer_size=2))
  return it


class CatalogClip(grain.transforms.Map):
  """video id -> its clip for evaluation: the centre frame of each TSN segment, or with
  `query_seed` a random frame of each segment seeded by (query_seed, video id) (the query view
  of the visual-query evaluation); with `titles`, the video's title inputs."""

  def __init__(self, loader, titles: titles_lib.TitleInputs | None = None,
               query_seed: int | None = None):
    self.loader, self.titles, self.query_seed = loader, titles, query_seed

  def map(self, video_id):
    rng = None if self.query_seed is None else np.random.default_rng([self.query_seed,
                                                                       int(video_id)])
    ex = self.loader.clip(int(video_id), rng)
    if self.titles is not None:
      ex.update(self.titles(video_id))
    ex["video_id"] = np.int64(video_id)
    return ex


def title_inputs(config: ml_collections.ConfigDict, catalog: Catalog, text_dir: str | None
                 ) -> titles_lib.TitleInputs | None:
  if not titles_lib.uses_text(config.model):
    return None
  return titles_lib.TitleInputs(config, catalog.title, text_dir)


def catalog_dataset(config: ml_collections.ConfigDict, catalog: Catalog, video_ids: np.ndarray,
                    features_dir: str | None = None, titles: titles_lib.TitleInputs | None = None,
                    query_seed: int | None = None) -> grain.IterDataset:
  """Clips of `video_ids` in order, in batches of data.eval_batch_size (last one short)."""
  d = config.data
  loader = _loader(config, catalog, features_dir, cache_videos=0)
  ds = grain.MapDataset.source(np.asarray(video_ids)).map(CatalogClip(loader, titles, query_seed))
  ds = ds.batch(d.eval_batch_size, drop_remainder=False)
  it = ds.to_iter_dataset(_read_options(d))
  if d.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.num_workers))
  return it


