"""The backbone feature cache: per-video frame features stored as ArrayRecord shards.

`--mode=extract` (vidrec_jax.train.extract) writes, per process, a shard
`features-PPPPP-of-NNNNN.array_record` whose records are `.npz` bytes (no pickle) holding
`video_id`, `frame_index` (which decoded frames were encoded) and `features` (n, D) float32, beside
it its index `features-PPPPP-of-NNNNN.index.npy` ((records, 2) int64: each record's video id and
frame count), and then `meta.json`, last, so an interrupted extraction is never mistaken for a
finished one.

A cache is read by record (`load_cache` -> `CacheTable`, a read-only mapping): each process and
loader worker keeps only the indexes and its open readers, so no process holds the cache whole
and the workers share the page cache instead of copying the tables.

Training from the cache samples TSN segments over the cached frames, exactly as the pixel
pipeline samples decoded frames (data/clips.py), so the model sees the same kind of clip without
decoding.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
from typing import Iterator, Mapping

import numpy as np
from array_record.python import array_record_module

from vidrec_jax import files
from vidrec_jax.data import motion

META = "meta.json"


class CacheError(ValueError):
  """A missing, unfinished or mismatched feature cache; one line naming the path."""


def shard_path(cache_dir: str, index: int, count: int) -> str:
  return os.path.join(cache_dir, f"features-{index:05d}-of-{count:05d}.array_record")


def index_path(shard: str) -> str:
  """The index written beside a shard: (records, 2) int64, each record's video id and frame
  count, in record order."""
  return os.path.splitext(shard)[0] + ".index.npy"


class ShardWriter:
  """Writes one cache shard record by record, then its index (`index_path`) on `close`."""

  def __init__(self, path: str):
    self.path = path
    self._writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    self._index: list[tuple[int, int]] = []

  def write(self, video_id: int, frame_index: np.ndarray, features: np.ndarray) -> None:
    self._writer.write(encode_record(video_id, frame_index, features))
    self._index.append((int(video_id), len(features)))

  def close(self, final_path: str | None = None) -> None:
    """Closes the shard and writes the index of `final_path` (the shard's name once it is
    moved into place; default its own)."""
    self._writer.close()
    with files.atomic_path(index_path(final_path or self.path)) as tmp:
      np.save(tmp, np.asarray(self._index, np.int64).reshape(-1, 2))


def encode_record(video_id: int, frame_index: np.ndarray, features: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.savez(buf, video_id=np.int64(video_id), frame_index=np.asarray(frame_index, np.int32),
           features=np.asarray(features, np.float32))
  return buf.getvalue()


def decode_record(raw: bytes) -> tuple[int, np.ndarray, np.ndarray]:
  with np.load(io.BytesIO(raw), allow_pickle=False) as z:
    return int(z["video_id"]), z["frame_index"], z["features"]


def write_meta(cache_dir: str, meta: dict) -> None:
  files.write_json(os.path.join(cache_dir, META), meta)


def read_meta(cache_dir: str) -> dict:
  path = os.path.join(cache_dir, META)
  if not os.path.exists(path):
    raise CacheError(f"feature cache not found or unfinished: {path} does not exist (run "
                     "--mode=extract with the same config first)")
  with open(path) as f:
    return json.load(f)


# Settings added to the metadata after caches without them were written: such a cache was made
# with the setting's value here.
META_DEFAULTS = {"selection": "spaced"}


def check_meta(cache_dir: str, expected: dict) -> dict:
  """The cache's metadata, or a CacheError naming the first setting that differs."""
  meta = read_meta(cache_dir)
  for k, v in expected.items():
    have = meta.get(k, META_DEFAULTS.get(k))
    if json.loads(json.dumps(v)) != have:
      raise CacheError(f"feature cache {cache_dir} was extracted with {k}={have!r}, the "
                       f"config asks for {v!r}; run --mode=extract again")
  return meta


class CacheTable(Mapping[int, np.ndarray]):
  """video id -> cached frame features (n, D), read record by record from a finished cache's
  shards (random access into ArrayRecord). Only the shards' indexes stay in memory (16 bytes a
  video); a shard without one (written before indexes existed) is indexed by one streaming
  pass. Readers open lazily in each process (a pickled or forked table reopens its own), so
  loader workers share the files through the page cache rather than each holding a copy."""

  def __init__(self, cache_dir: str):
    meta = read_meta(cache_dir)
    self.cache_dir = cache_dir
    self.shards = [os.path.join(cache_dir, s) for s in meta["shards"]]
    missing = [s for s in self.shards if not os.path.exists(s)]
    if missing:
      raise CacheError(f"feature cache {cache_dir} is missing shard {missing[0]}")
    self._where: dict[int, tuple[int, int]] = {}  # video id -> (shard, record)
    self._frames: dict[int, int] = {}
    for si, s in enumerate(self.shards):
      index = self._index(s)
      for ri, (vid, n) in enumerate(index.tolist()):
        self._where[vid] = (si, ri)  # a later record of a video wins, as it always did
        self._frames[vid] = n
    self._readers: dict[int, object] = {}
    self._pid = os.getpid()

  @staticmethod
  def _index(shard: str) -> np.ndarray:
    path = index_path(shard)
    if os.path.exists(path):
      return np.load(path).reshape(-1, 2)
    reader = array_record_module.ArrayRecordReader(shard)
    rows = []
    for _ in range(reader.num_records()):
      vid, _, feats = decode_record(reader.read())
      rows.append((vid, len(feats)))
    reader.close()
    return np.asarray(rows, np.int64).reshape(-1, 2)

  def __getstate__(self):
    return dict(self.__dict__, _readers={})

  def _reader(self, shard: int):
    if self._pid != os.getpid():  # a forked copy: the parent's readers are not ours
      self._readers, self._pid = {}, os.getpid()
    if shard not in self._readers:
      self._readers[shard] = array_record_module.ArrayRecordReader(
          self.shards[shard], "readahead_buffer_size:0")
    return self._readers[shard]

  def __getitem__(self, video_id: int) -> np.ndarray:
    shard, record = self._where[int(video_id)]
    return decode_record(self._reader(shard).read([record])[0])[2]

  def __contains__(self, video_id) -> bool:
    return int(video_id) in self._where

  def __iter__(self) -> Iterator[int]:
    return iter(self._where)

  def __len__(self) -> int:
    return len(self._where)

  def frames(self, video_id: int) -> int:
    """A video's cached frame count, from the index (no read)."""
    return self._frames[int(video_id)]


def load_cache(cache_dir: str) -> CacheTable:
  """video id -> cached frame features (n, D) of every shard listed in the metadata, read by
  record (`CacheTable`)."""
  return CacheTable(cache_dir)


class LRU:
  """Keeps the `size` most recently used entries (`size` 0: none); pickles empty (a loader
  worker starts with its own)."""

  def __init__(self, size: int):
    self.size = size
    self._items: collections.OrderedDict = collections.OrderedDict()

  def __getstate__(self):
    return {"size": self.size, "_items": collections.OrderedDict()}

  def __len__(self) -> int:
    return len(self._items)

  def keys(self):
    return self._items.keys()

  def lookup(self, key):
    """The entry of `key`, marked as recently used; None when absent."""
    if key not in self._items:
      return None
    self._items.move_to_end(key)
    return self._items[key]

  def put(self, key, value) -> None:
    if self.size <= 0:
      return
    self._items[key] = value
    self._items.move_to_end(key)
    while len(self._items) > self.size:
      self._items.popitem(last=False)


def frame_norm(x: np.ndarray) -> np.ndarray:
  """Each row to zero mean and unit variance (a layer norm without its scale and shift)."""
  x = np.asarray(x, np.float64)
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(np.square(x - mu).mean(-1, keepdims=True) + 1e-6)


@dataclasses.dataclass(frozen=True)
class Whitening:
  """A fixed map of cached frame features (n, D) -> (n, k): each frame's features normalised
  (`frame_norm`), joined by the motion histograms of its flow-cache field when `flow`
  (data/motion.py), each column standardised, then projected onto the top-k principal
  components of the fitted frames and scaled to unit variance along each (PCA whitening)."""

  mean: np.ndarray  # (D',) of the joined columns
  std: np.ndarray  # (D',)
  proj: np.ndarray  # (D', k)
  flow: bool

  @property
  def dim(self) -> int:
    return int(self.proj.shape[1])

  def columns(self, x: np.ndarray, field: np.ndarray | None = None) -> np.ndarray:
    """The standardised columns of one video's frames, before the projection; `field` is the
    frames' flow-cache entry (fields or their motion histograms)."""
    x = frame_norm(x)
    if self.flow:
      if field is None or len(field) != len(x):
        raise CacheError(f"feature whitening reads the flow of each of the {len(x)} frames; got "
                         f"{'none' if field is None else len(field)}")
      x = np.concatenate([x, motion.as_histograms(field)], axis=1)
    return (x - self.mean) / self.std

  def __call__(self, x: np.ndarray, field: np.ndarray | None = None) -> np.ndarray:
    return (self.columns(x, field) @ self.proj).astype(np.float32)


def frame_count(table: Mapping[int, np.ndarray], video_id: int) -> int:
  """A video's frame count in `table` (a `CacheTable` answers from its index, without a read)."""
  return table.frames(video_id) if isinstance(table, CacheTable) else len(table[video_id])


def fit_whitening(table: Mapping[int, np.ndarray], video_ids, k: int,
                  flows: Mapping[int, np.ndarray] | None = None,
                  max_rows: int = 50_000) -> Whitening:
  """PCA whitening fitted on the frames of `video_ids` (the training videos: the fit uses no
  label and no other video), at most `max_rows` frames evenly spaced over them in video-id
  order; with `flows` (video id -> the flow cache's entries: fields or motion histograms) the
  frames' motion histograms join the features. Each component's sign is fixed (its largest
  loading positive), so the same frames give the same map wherever it is computed.

  It streams: frame counts come from the cache's index, and only the videos holding a picked
  frame are read, one at a time, so memory is bounded by `max_rows` at any catalog size."""
  ids = sorted({int(v) for v in np.asarray(video_ids).ravel()})
  ids = [v for v in ids if v in table and (flows is None or v in flows)]
  counts = np.asarray([frame_count(table, v) for v in ids], np.int64)
  ids, counts = [v for v, n in zip(ids, counts) if n], counts[counts > 0]
  if not ids:
    raise CacheError("feature whitening: no cached features for any training video")
  total = int(counts.sum())
  pick = (np.linspace(0, total - 1, max_rows).astype(np.int64) if total > max_rows
          else np.arange(total))
  starts = np.cumsum(counts) - counts
  rows = []
  for v, start, n in zip(ids, starts.tolist(), counts.tolist()):
    lo, hi = np.searchsorted(pick, [start, start + n])
    if lo == hi:
      continue
    r = frame_norm(table[v])
    if flows is not None:
      r = np.concatenate([r, motion.as_histograms(flows[v])], axis=1)
    rows.append(r[pick[lo:hi] - start])
  x = np.concatenate(rows)
  if not 0 < k <= min(x.shape):
    raise CacheError(f"feature whitening: {k} components asked of {x.shape[0]} training frames "
                     f"of width {x.shape[1]}; allowed: 1 to {min(x.shape)}")
  mean, std = x.mean(0), x.std(0) + 1e-6
  _, s, vt = np.linalg.svd((x - mean) / std, full_matrices=False)
  vt = vt[:k] * np.sign(vt[:k][np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])[:, None]
  scale = np.maximum(s[:k] / np.sqrt(len(x)), 1e-6)
  return Whitening(mean=mean, std=std, proj=vt.T / scale[None], flow=flows is not None)
