"""Clips for the item tower: a video's frames (decoded pixels or cached backbone features),
TSN-sampled, turned into the model's clip inputs by the registered clip ops (data/ops.py).

An unreadable video (missing, empty, truncated, not a video; or absent from the feature cache)
is reported by name once and comes back with `valid=0` and zero inputs, so batches keep a
static shape and the train step gives it zero weight.
"""

from __future__ import annotations

import collections
from typing import Callable

import numpy as np
from absl import logging

from vidrec_jax.data import features
from vidrec_jax.data import ops
from vidrec_jax.data import video_io
from vidrec_jax.data.datasets import Catalog


class PixelFrames:
  """Decoded frames (uint8 (T, S, S, 3)) of each video, with a per-process LRU of videos.

  At most `max_frames` frames of a video are decoded and kept, evenly spaced or consecutive
  around the middle (`selection`), by streaming: a long film never sits in memory whole. Frames
  keep their aspect ratio (short side resize, centre crop). A catalog entry without a video
  file (reported when the dataset was prepared) has no frames.
  """

  source = ops.PIXELS

  def __init__(self, catalog: Catalog, frame_size: int, normalization: str, cache_videos: int,
               max_frames: int, stored: dict[str, str] | None = None,
               selection: str = "spaced"):
    self.catalog, self.frame_size, self.cache_videos = catalog, frame_size, cache_videos
    self.max_frames, self.selection = max_frames, selection
    self.normalization = normalization
    self.item_shape = (frame_size, frame_size, 3)
    self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
    self._derived: collections.OrderedDict[tuple[str, int], np.ndarray] = (
        collections.OrderedDict())
    # Derived inputs written offline (e.g. the flow cache): key -> cache folder, and its table
    # once read (each process and worker reads it once, on first use).
    self.stored = dict(stored or {})
    self._stored: dict[str, dict[int, np.ndarray]] = {}
    self._bad: set[int] = set()

  def __getstate__(self):  # worker processes start with empty caches
    return dict(self.__dict__, _cache=collections.OrderedDict(),
                _derived=collections.OrderedDict(), _stored={})

  def derived(self, key: str, video_id: int, fn: Callable[[np.ndarray], np.ndarray],
              frames: np.ndarray) -> np.ndarray:
    """fn(frames) of one video (e.g. its optical flow): read from the offline cache of `key`
    when there is one and it holds the video, else computed once and kept for the
    `cache_videos` most recently used (video, key) pairs, as the frames are."""
    if key in self.stored:
      if key not in self._stored:
        self._stored[key] = features.load_cache(self.stored[key])
      if video_id in self._stored[key]:
        return self._stored[key][video_id]
    k = (key, video_id)
    if k in self._derived:
      self._derived.move_to_end(k)
      return self._derived[k]
    out = fn(frames)
    if self.cache_videos > 0:
      self._derived[k] = out
      if len(self._derived) > self.cache_videos:
        self._derived.popitem(last=False)
    return out

  def prep(self, frames: np.ndarray) -> np.ndarray:
    return ops.normalize(frames, self.normalization)

  def input_shape(self, key: str) -> tuple[int, ...]:
    """The per-segment shape of clip input `key` (an unreadable video's zeros)."""
    channels = ops.CLIP_OPS.get(key).channels
    return self.item_shape[:-1] + (channels,) if channels else self.item_shape

  def get(self, video_id: int) -> np.ndarray | None:
    if video_id in self._cache:
      self._cache.move_to_end(video_id)
      return self._cache[video_id]
    path = self.catalog.path(video_id)
    if video_id in self._bad or not path:
      return None
    try:
      frames = video_io.decode_video(path, self.frame_size, self.max_frames, self.selection)
    except video_io.VideoDecodeError as e:
      self._bad.add(video_id)
      logging.warning("skipping undecodable video %s", e)
      return None
    if self.cache_videos > 0:
      self._cache[video_id] = frames
      if len(self._cache) > self.cache_videos:
        self._cache.popitem(last=False)
    return frames


class CachedFeatures:
  """Cached backbone features ((T, D) float32) of each video, from `--mode=extract`'s cache,
  read by record (data/features.py `CacheTable`: each process and worker opens its own readers
  on first use and holds the indexes only).

  `stored` names other per-frame caches read beside the features (clip input key -> cache
  folder; e.g. the flow cache for `cached_flow`): a video is served only when every table holds
  it with the same number of frames as its features; otherwise it is reported once and skipped.
  `whitening` (data/features.py `Whitening`, `model.backbone.whiten`) maps each video's
  features as they are served: the clip then carries its (T, k) output. A whitening that reads
  the flow takes it from the stored table `whitening_flow`.
  """

  source = ops.FEATURES
  KEEP_WHITENED = 1024  # videos whose whitened features a process keeps

  def __init__(self, cache_dir: str, dim: int, stored: dict[str, str] | None = None,
               whitening: features.Whitening | None = None,
               whitening_flow: str = "cached_flow"):
    self.cache_dir, self.whitening, self.whitening_flow = cache_dir, whitening, whitening_flow
    self.item_shape = (whitening.dim if whitening is not None else dim,)
    self.stored = dict(stored or {})
    if whitening is not None and whitening.flow and whitening_flow not in self.stored:
      raise ValueError(f"the feature whitening reads the flow from the {whitening_flow!r} "
                       "cache; none was given beside the features")
    self._table: dict[int, np.ndarray] | None = None
    self._stored: dict[str, dict[int, np.ndarray]] = {}
    # k columns a frame, for the most recently served videos
    self._whitened = features.LRU(self.KEEP_WHITENED)
    self._reported: set[int] = set()

  def __getstate__(self):  # workers load the tables themselves
    return dict(self.__dict__, _table=None, _stored={},
                _whitened=features.LRU(self.KEEP_WHITENED))

  @staticmethod
  def prep(x: np.ndarray) -> np.ndarray:
    return x

  def _skip(self, video_id: int, why: str) -> None:
    if video_id not in self._reported:
      self._reported.add(video_id)
      logging.warning("video %d: %s; skipped", video_id, why)

  def _stored_table(self, key: str) -> dict[int, np.ndarray]:
    if key not in self._stored:
      self._stored[key] = features.load_cache(self.stored[key])
    return self._stored[key]

  def get(self, video_id: int) -> np.ndarray | None:
    if self.whitening is not None:
      out = self._whitened.lookup(video_id)
      if out is not None:  # served before: its tables were checked then
        return out
    if self._table is None:
      self._table = features.load_cache(self.cache_dir)
    n = features.frame_count(self._table, video_id) if video_id in self._table else 0
    if not n:
      self._skip(video_id, f"no cached features in {self.cache_dir} (it failed at extraction)")
      return None
    for key in self.stored:
      table = self._stored_table(key)
      other = features.frame_count(table, video_id) if video_id in table else None
      if other != n:
        self._skip(video_id, f"the {key} cache in {self.stored[key]} has "
                   + ("no entry" if other is None else f"{other} frames, the features {n}"))
        return None
    feats = self._table[video_id]
    if self.whitening is None:
      return feats
    out = self.whitening(feats, self._stored_table(self.whitening_flow)[video_id]
                         if self.whitening.flow else None)
    self._whitened.put(video_id, out)
    return out

  def input_shape(self, key: str) -> tuple[int, ...]:
    """The per-segment shape of clip input `key` (an unreadable video's zeros): a stored
    table's entries' for its key."""
    if key not in self.stored:
      return self.item_shape
    return next(iter(self._stored_table(key).values())).shape[1:]

  def derived(self, key: str, video_id: int, fn, frames: np.ndarray) -> np.ndarray:
    """The stored table `key`'s entry of a video that `get` served (`fn` never runs: there
    are no pixels here)."""
    del fn, frames
    return self._stored[key][video_id]


class ClipSampler:
  """video id -> {clip input: array, 'mask': (K,), 'valid': int32}, K TSN segments.

  Training passes a seeded `rng` (a random frame inside each segment); evaluation passes None
  (the centre frame), or a seeded rng for a second, random view. There is no mirroring
  augmentation: it would turn left-moving videos into right-moving ones, and motion direction
  is content that users have tastes for.
  """

  def __init__(self, frames: PixelFrames | CachedFeatures | None, keys: tuple[str, ...],
               num_segments: int):
    self.frames, self.num_segments = frames, num_segments
    self.keys = tuple(k for k in keys if k != "mask")
    self._ops: dict[str, ops.ClipOp] = {k: ops.CLIP_OPS.get(k) for k in self.keys}
    for k, op in self._ops.items():
      if op.per_video is not None and frames is not None and not hasattr(frames, "derived"):
        raise ValueError(f"clip input {k!r} is computed from decoded pixels per video; the "
                         f"frame source {type(frames).__name__} has none")
      if (op.source == ops.FEATURES and op.per_video is not None and frames is not None
          and k not in getattr(frames, "stored", {})):
        raise ValueError(f"clip input {k!r} is read from its own cache beside the features; "
                         f"the frame source {type(frames).__name__} was given none")

  def clip(self, video_id: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    if self.frames is None:  # a model without a content tower: nothing to read
      return {"valid": np.int32(1)}
    k = self.num_segments
    x = self.frames.get(int(video_id))
    if x is None:
      out = {key: np.zeros((k,) + self.frames.input_shape(key), np.float32)
             for key in self.keys}
      return dict(out, mask=np.zeros(k, np.float32), valid=np.int32(0))
    idx, mask = video_io.tsn_indices(len(x), k, rng)
    nxt = np.minimum(idx + 1, len(x) - 1)
    out = {}
    for key, op in self._ops.items():
      src = x if op.per_video is None else self.frames.derived(key, int(video_id), op.per_video, x)
      out[key] = op.fn(src, idx, nxt, mask, self.frames.prep).astype(np.float32)
    return dict(out, mask=mask, valid=np.int32(1))
