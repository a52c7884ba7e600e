"""The backbone feature cache: per-video frame features stored as ArrayRecord shards.

`--mode=extract` (vidrec_jax.train.extract) writes, per process, a shard
`features-PPPPP-of-NNNNN.array_record` whose records are `.npz` bytes (no pickle) holding
`video_id`, `frame_index` (which decoded frames were encoded) and `features` (n, D) float32, and
then `meta.json`, last, so an interrupted extraction is never mistaken for a finished one.

Training from the cache samples TSN segments over the cached frames, exactly as the pixel
pipeline samples decoded frames, so the model sees the same kind of clip without decoding.
"""

from __future__ import annotations

import glob
import io
import json
import os

import numpy as np
from absl import logging
from array_record.python import array_record_module

from vidrec_jax.data import video_io

META = "meta.json"


class CacheError(ValueError):
  """A missing, unfinished or mismatched feature cache; one line naming the path."""


def shard_path(cache_dir: str, index: int, count: int) -> str:
  return os.path.join(cache_dir, f"features-{index:05d}-of-{count:05d}.array_record")


def encode_record(video_id: int, frame_index: np.ndarray, features: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.savez(buf, video_id=np.int64(video_id), frame_index=np.asarray(frame_index, np.int32),
           features=np.asarray(features, np.float32))
  return buf.getvalue()


def decode_record(raw: bytes) -> tuple[int, np.ndarray, np.ndarray]:
  with np.load(io.BytesIO(raw), allow_pickle=False) as z:
    return int(z["video_id"]), z["frame_index"], z["features"]


def write_shard(path: str, records: list[bytes]) -> None:
  """Writes a shard atomically (temporary name, then rename)."""
  tmp = path + ".tmp"
  w = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
  for r in records:
    w.write(r)
  w.close()
  os.replace(tmp, path)


def write_meta(cache_dir: str, meta: dict) -> None:
  tmp = os.path.join(cache_dir, META + ".tmp")
  with open(tmp, "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
  os.replace(tmp, os.path.join(cache_dir, META))


def read_meta(cache_dir: str) -> dict:
  path = os.path.join(cache_dir, META)
  if not os.path.exists(path):
    raise CacheError(f"feature cache not found or unfinished: {path} does not exist (run "
                     "--mode=extract with the same config first)")
  with open(path) as f:
    return json.load(f)


def check_meta(cache_dir: str, expected: dict) -> dict:
  """The cache's metadata, or a CacheError naming the first setting that differs."""
  meta = read_meta(cache_dir)
  for k, v in expected.items():
    if json.loads(json.dumps(v)) != meta.get(k):
      raise CacheError(f"feature cache {cache_dir} was extracted with {k}={meta.get(k)!r}, the "
                       f"config asks for {v!r}; run --mode=extract again")
  return meta


def load_cache(cache_dir: str) -> dict[int, np.ndarray]:
  """video id -> cached frame features (n, D) from every shard listed in the metadata."""
  meta = read_meta(cache_dir)
  shards = [os.path.join(cache_dir, s) for s in meta["shards"]]
  missing = [s for s in shards if not os.path.exists(s)]
  if missing:
    raise CacheError(f"feature cache {cache_dir} is missing shard {missing[0]}")
  table = {}
  for s in shards:
    reader = array_record_module.ArrayRecordReader(s)
    for raw in reader.read_all():
      vid, _, feats = decode_record(raw)
      table[vid] = feats
    reader.close()
  return table


def stale_shards(cache_dir: str) -> list[str]:
  return glob.glob(os.path.join(cache_dir, "features-*.array_record*"))


class FeatureLoader:
  """Clips from the feature cache: TSN segments over each video's cached frame features.

  Has the `clip(video_id, rng)` interface of the pixel ClipLoader; a video missing from the
  cache (it failed to decode at extraction) comes back with valid=0 and is reported once.
  """

  def __init__(self, cache_dir: str, num_segments: int, dim: int, adjacent: bool = False):
    self.cache_dir, self.num_segments, self.dim = cache_dir, num_segments, dim
    self.adjacent = adjacent  # also return the features of the cached frame after each one
    self._table: dict[int, np.ndarray] | None = None
    self._reported: set[int] = set()

  def __getstate__(self):  # workers load the table themselves
    d = dict(self.__dict__)
    d["_table"] = None
    return d

  def clip(self, video_id: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    if self._table is None:
      self._table = load_cache(self.cache_dir)
    k = self.num_segments
    feats = self._table.get(int(video_id))
    if feats is None or len(feats) == 0:
      if int(video_id) not in self._reported:
        self._reported.add(int(video_id))
        logging.warning("video %d has no cached features in %s (it failed at extraction)",
                        video_id, self.cache_dir)
      out = {"features": np.zeros((k, self.dim), np.float32), "mask": np.zeros(k, np.float32),
             "valid": np.int32(0)}
      if self.adjacent:
        out["next_features"] = out["features"]
      return out
    idx, mask = video_io.tsn_indices(len(feats), k, rng)
    out = {"features": feats[idx] * mask[:, None], "mask": mask, "valid": np.int32(1)}
    if self.adjacent:
      out["next_features"] = feats[np.minimum(idx + 1, len(feats) - 1)] * mask[:, None]
    return out
