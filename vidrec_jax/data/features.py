"""The backbone feature cache: per-video frame features stored as ArrayRecord shards.

`--mode=extract` (vidrec_jax.train.extract) writes, per process, a shard
`features-PPPPP-of-NNNNN.array_record` whose records are `.npz` bytes (no pickle) holding
`video_id`, `frame_index` (which decoded frames were encoded) and `features` (n, D) float32, and
then `meta.json`, last, so an interrupted extraction is never mistaken for a finished one.

Training from the cache samples TSN segments over the cached frames, exactly as the pixel
pipeline samples decoded frames (data/clips.py), so the model sees the same kind of clip without
decoding.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
from array_record.python import array_record_module

from vidrec_jax import files

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


def write_meta(cache_dir: str, meta: dict) -> None:
  files.write_json(os.path.join(cache_dir, META), meta)


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
