"""Impressions grouped by video for the training stream, and each process's rows of a global
batch.

One decoded and encoded clip serves several logged impressions of its video (several viewers),
so the costly content tower runs once per chunk of `impressions_per_clip` impressions instead
of once per impression.
"""

from __future__ import annotations

import grain
import numpy as np

from vidrec_jax.data.datasets import Split


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
  """Random-access source whose element i is one video with its chunk of impressions: the user
  of each and the per-impression `columns` (labels, position), padded, with a `weight` mask."""

  def __init__(self, split: Split, groups: np.ndarray, columns: tuple[str, ...]):
    self.split, self.groups, self.columns = split, groups, columns

  def __len__(self) -> int:
    return len(self.groups)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    rows = self.groups[i]
    real = rows[rows >= 0]
    recs = self.split.records(real)
    n, m = len(recs), len(rows)

    def col(key, dtype):
      out = np.zeros(m, dtype)
      out[:n] = [r[key] for r in recs]
      return out

    types = {"position": np.int32, "timestamp": np.float64}
    out = {c: col(c, types.get(c, np.float32)) for c in self.columns}
    return dict(out, video_id=np.int64(recs[0]["video_id"]), user_id=col("user_id", np.int64),
                weight=(np.arange(m) < n).astype(np.float32))
