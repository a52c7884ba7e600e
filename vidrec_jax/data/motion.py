"""Motion statistics of optical-flow fields, the same numbers from numpy (the loader: feature
whitening, data/features.py) and from jax.numpy (the model: the backbone encoder's
`flow_stream='histogram'`, models/backbone_encoder.py)."""

from __future__ import annotations

import numpy as np

ORIENTATION_BINS = 8
# Edges of the flow-magnitude histogram, in 1/16 of the frame height per frame (log-spaced).
MAGNITUDE_EDGES = tuple(0.1 * 2.0 ** (k / 2) for k in range(9))
MOVING = MAGNITUDE_EDGES[0]  # a pixel whose flow is at least this moves
HISTOGRAM_FEATURES = ORIENTATION_BINS + len(MAGNITUDE_EDGES) + 4


def as_histograms(flow: np.ndarray) -> np.ndarray:
  """A flow-cache entry as motion histograms (N, HISTOGRAM_FEATURES): fields (N, H, W, 2) are
  summarised by `flow_histograms`; a cache that stores the histograms already
  (data/flow_cache.py, form 'histograms') passes through."""
  flow = np.asarray(flow)
  return flow if flow.ndim == 2 else flow_histograms(flow)


def flow_units(field, dtype):
  """Flow in units of 1/16 of the frame height: the same motion gives the same numbers at any
  frame size."""
  return (field * (16.0 / field.shape[1])).astype(dtype)


def _one_hot(index, n: int, xp):
  return (index[..., None] == xp.arange(n)).astype(xp.float32)


def flow_histograms(field, xp=np):
  """(N, H, W, 2) flow in pixels -> (N, HISTOGRAM_FEATURES) motion statistics of each frame, no
  parameters (a histogram of optical flow, as HOF descriptors; Laptev et al., CVPR 2008):
  the orientation histogram of the moving pixels weighted by their flow magnitude (summing to
  one), the histogram of their magnitudes (log-spaced bins, summing to one), the share of
  pixels that move, the mean magnitude and the mean flow (dx, dy) over the frame. Flow is in
  1/16 of the frame height (`flow_units`). `xp`: numpy or jax.numpy."""
  f = flow_units(xp.asarray(field), xp.float32)
  n = f.shape[0]
  f = f.reshape(n, -1, 2)
  mag = xp.sqrt(xp.sum(xp.square(f), axis=-1))
  moving = (mag >= MOVING).astype(xp.float32)
  angle = xp.arctan2(f[..., 1], f[..., 0])  # -pi..pi
  obin = xp.floor((angle + xp.pi) / (2 * xp.pi) * ORIENTATION_BINS).astype(xp.int32)
  onehot = _one_hot(xp.clip(obin, 0, ORIENTATION_BINS - 1), ORIENTATION_BINS, xp)
  orient = xp.sum(onehot * (mag * moving)[..., None], axis=1)
  orient = orient / xp.maximum(xp.sum(orient, axis=-1, keepdims=True), 1e-6)
  mbin = xp.searchsorted(xp.asarray(MAGNITUDE_EDGES[1:], xp.float32), mag)  # 0..len(edges) - 1
  mags = xp.sum(_one_hot(mbin, len(MAGNITUDE_EDGES), xp) * moving[..., None], axis=1)
  count = xp.sum(moving, axis=1, keepdims=True)
  mags = mags / xp.maximum(count, 1.0)
  return xp.concatenate([orient, mags, count / f.shape[1], mag.mean(1, keepdims=True),
                         f.mean(axis=1)], axis=-1).astype(xp.float32)
