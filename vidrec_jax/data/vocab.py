"""ID vocabularies: raw user / video ids -> embedding rows, built from the training split only."""

from __future__ import annotations

import numpy as np


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
