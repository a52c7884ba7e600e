"""A pretrained image backbone as the frame encoder: its intermediate outputs are the features.

Pixels -> backbone (EfficientNet-Lite, ResNet, ...) -> the configured intermediate maps, each
average-pooled to a small grid (so coarse position survives) -> per-frame vector. A trainable
frame head then mixes each frame's vector with a temporal difference of the features (a motion
cue from the features themselves: a shape that moves shifts its activations across the grid),
chosen by `model.frame_encoder.temporal_difference`:
  `adjacent`: features of the frame right after each sampled frame minus the frame's own (the
    feature-space twin of TSN's RGB difference; from pixels it needs `data.motion=True`, the
    next frame being frame + RGB difference, and costs a second backbone pass);
  `segments`: the next *sampled* frame's features minus this one's (free, but coarse: sampled
    frames can be many frames apart);
  `none`: appearance only.

The same head runs on precomputed features: with `model.backbone.from_cache=True` the clip carries
`features` (B, T, D) written by `--mode=extract`, and no backbone is built at all.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from vidrec_jax.models import backbones
from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import constrain

TRAIN_MODES = ("frozen", "top_blocks", "full")
TEMPORAL_DIFFERENCES = ("adjacent", "segments", "none")
BACKBONE_PREFIX = "frame_encoder/backbone/"


def grid_pool(x: jax.Array, grid: int) -> jax.Array:
  """(N, H, W, C) -> (N, grid * grid * C): mean over each cell of a grid x grid partition
  (cells cover the map; with H < grid some cells share rows)."""
  n, h, w, c = x.shape
  x = x.astype(jnp.float32)
  cells = []
  for i in range(grid):
    r0, r1 = (i * h) // grid, max(((i + 1) * h + grid - 1) // grid, (i * h) // grid + 1)
    for j in range(grid):
      c0, c1 = (j * w) // grid, max(((j + 1) * w + grid - 1) // grid, (j * w) // grid + 1)
      cells.append(x[:, r0:r1, c0:c1, :].mean(axis=(1, 2)))
  return jnp.concatenate(cells, axis=-1)


@functools.lru_cache(maxsize=None)
def _shapes(name: str) -> nnx.Module:
  """The abstract backbone (shapes only), built once per name: labels ask for it per parameter."""
  return backbones.abstract(name)


def feature_dim(model_cfg: ml_collections.ConfigDict) -> int:
  """Width of the per-frame vector the backbone (or the cache) provides."""
  b = model_cfg.backbone
  chans = _shapes(b.name).stage_channels()
  return sum(chans[o] * b.grid * b.grid for o in b.outputs)


def used_blocks(model_cfg: ml_collections.ConfigDict) -> tuple[int, bool]:
  """(number of backbone blocks the configured outputs need, whether the head conv is used)."""
  b = model_cfg.backbone
  net = _shapes(b.name)
  return max(net.num_blocks_for(o) for o in b.outputs), any(
      o in ("head", "pooled", "logits") for o in b.outputs)


def frame_vectors(backbone: nnx.Module, frames: jax.Array, outputs, grid: int) -> jax.Array:
  """Normalised frames (N, H, W, 3) -> grid-pooled backbone outputs (N, D), float32. The feature
  cache is written by this same function, so cached and live features are the same numbers."""
  maps = backbone(frames, outputs=tuple(outputs))
  return jnp.concatenate([grid_pool(maps[o], grid) for o in outputs], axis=-1)


class BackboneFrameEncoder(nnx.Module):
  """Backbone intermediate outputs (or cached features) -> per-frame features (B, T, F)."""

  def __init__(self, model_cfg: ml_collections.ConfigDict, *, dtype, param_dtype,
               rngs: nnx.Rngs):
    b = model_cfg.backbone
    fe = model_cfg.frame_encoder
    self.outputs = tuple(b.outputs)
    self.grid = b.grid
    self.from_cache = b.from_cache
    self.temporal_difference = fe.temporal_difference
    self.features = fe.features
    self.backbone = None if b.from_cache else backbones.BACKBONES[b.name].build(
        dtype, param_dtype, rngs)
    d = feature_dim(model_cfg)
    self.norm = nnx.LayerNorm(d, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    din = d if self.temporal_difference == "none" else 2 * d
    self.mix = layers.MLP((din, fe.hidden, fe.features), ("conv_out", "embed"), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)

  def frame_vectors(self, frames: jax.Array) -> jax.Array:
    return frame_vectors(self.backbone, frames, self.outputs, self.grid)

  def __call__(self, clip: dict) -> tuple[jax.Array, dict]:
    mask = clip["mask"]
    adjacent = self.temporal_difference == "adjacent"
    if self.from_cache:
      x = clip["features"].astype(jnp.float32)
      nxt = clip["next_features"].astype(jnp.float32) if adjacent else None
    else:
      frames = clip["frames"]
      b, t, h, w, c = frames.shape
      flat = frames.reshape(b * t, h, w, c)
      if adjacent:  # one backbone pass over the sampled frames and the frames right after them
        flat = jnp.concatenate([flat, (frames + clip["motion"]).reshape(b * t, h, w, c)])
      flat = constrain(flat, ("batch", None, None, None))
      vecs = self.frame_vectors(flat)
      x = vecs[:b * t].reshape(b, t, -1)
      nxt = vecs[b * t:].reshape(b, t, -1) if adjacent else None
    if adjacent:
      diff = (self.norm(nxt) - self.norm(x)) * mask[..., None]
      x = jnp.concatenate([self.norm(x), diff], axis=-1)
    elif self.temporal_difference == "segments":
      x = self.norm(x)
      # Difference to the next sampled frame; zero at the last valid frame and on padding.
      nx = jnp.concatenate([x[:, 1:], x[:, -1:]], axis=1)
      has_next = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1) * mask
      x = jnp.concatenate([x, (nx - x) * has_next[..., None]], axis=-1)
    else:
      x = self.norm(x)
    x = self.mix(x)
    x = constrain(x, ("batch", "time", "embed"))
    return x, {"frame_features": x}


def backbone_label(path: str, model_cfg: ml_collections.ConfigDict) -> str:
  """Optimizer label of a parameter path ('/'-joined): 'default', 'backbone' or 'frozen'.

  Backbone batch-norm statistics (`mean`, `var`) and the unused classifier are always frozen.
  `frozen`: the whole backbone. `top_blocks`: only the last `top_blocks` of the blocks the
  configured outputs use, plus the head conv when an output needs it. `full`: every used layer.
  """
  if not path.startswith(BACKBONE_PREFIX):
    return "default"
  b = model_cfg.backbone
  rest = path[len(BACKBONE_PREFIX):]
  parts = rest.split("/")
  if parts[-1] in ("mean", "var") or parts[0] == "classifier" or b.train_mode == "frozen":
    return "frozen"
  n_used, head_used = used_blocks(model_cfg)
  if parts[0] == "blocks":
    i = int(parts[1])
    if i >= n_used:
      return "frozen"
    return "backbone" if b.train_mode == "full" or i >= n_used - b.top_blocks else "frozen"
  if parts[0].startswith("head"):
    return "backbone" if head_used else "frozen"
  # stem and anything before the blocks
  return "backbone" if b.train_mode == "full" or (
      b.train_mode == "top_blocks" and b.top_blocks >= n_used) else "frozen"
