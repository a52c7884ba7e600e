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

import dataclasses
import io
import json
import os

import numpy as np
from array_record.python import array_record_module

from vidrec_jax import files
from vidrec_jax.data import motion

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
    """The standardised columns of one video's frames, before the projection."""
    x = frame_norm(x)
    if self.flow:
      if field is None or len(field) != len(x):
        raise CacheError(f"feature whitening reads the flow of each of the {len(x)} frames; got "
                         f"{'none' if field is None else len(field)}")
      x = np.concatenate([x, motion.flow_histograms(field)], axis=1)
    return (x - self.mean) / self.std

  def __call__(self, x: np.ndarray, field: np.ndarray | None = None) -> np.ndarray:
    return (self.columns(x, field) @ self.proj).astype(np.float32)


def fit_whitening(table: dict[int, np.ndarray], video_ids, k: int,
                  flows: dict[int, np.ndarray] | None = None,
                  max_rows: int = 50_000) -> Whitening:
  """PCA whitening fitted on the frames of `video_ids` (the training videos: the fit uses no
  label and no other video), at most `max_rows` frames evenly spaced over them in video-id
  order; with `flows` (video id -> the flow cache's fields) the frames' motion histograms join
  the features. Each component's sign is fixed (its largest loading positive), so the same
  frames give the same map wherever it is computed."""
  ids = sorted({int(v) for v in np.asarray(video_ids).ravel()})
  ids = [v for v in ids if v in table and len(table[v]) and (flows is None or v in flows)]
  if not ids:
    raise CacheError("feature whitening: no cached features for any training video")
  rows = [frame_norm(table[v]) for v in ids]
  if flows is not None:
    rows = [np.concatenate([r, motion.flow_histograms(flows[v])], axis=1)
            for r, v in zip(rows, ids)]
  x = np.concatenate(rows)
  if len(x) > max_rows:
    x = x[np.linspace(0, len(x) - 1, max_rows).astype(int)]
  if not 0 < k <= min(x.shape):
    raise CacheError(f"feature whitening: {k} components asked of {x.shape[0]} training frames "
                     f"of width {x.shape[1]}; allowed: 1 to {min(x.shape)}")
  mean, std = x.mean(0), x.std(0) + 1e-6
  _, s, vt = np.linalg.svd((x - mean) / std, full_matrices=False)
  vt = vt[:k] * np.sign(vt[:k][np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])[:, None]
  scale = np.maximum(s[:k] / np.sqrt(len(x)), 1e-6)
  return Whitening(mean=mean, std=std, proj=vt.T / scale[None], flow=flows is not None)
