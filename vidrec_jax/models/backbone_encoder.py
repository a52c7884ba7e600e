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

The backbone is a registered pretrained part ("backbone"): state initialisation loads its
converted weights, and `model.backbone.train_mode` decides which of its parameters train.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.checkpoints.parts import PRETRAINED_PARTS
from vidrec_jax.checkpoints.parts import PretrainedPart
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.models import backbones
from vidrec_jax.models import layers
from vidrec_jax.models.encoders import FRAME_ENCODERS
from vidrec_jax.models.encoders import FrameEncoder
from vidrec_jax.models.partitioning import constrain

TRAIN_MODES = ("frozen", "top_blocks", "full")
TEMPORAL_DIFFERENCES = ("adjacent", "segments", "none")
BACKBONE_PREFIX = "frame_encoder/backbone/"


@dataclasses.dataclass(frozen=True)
class BackboneArgs:
  """The `model.backbone` config section: which pretrained network, its outputs, what trains.

  Attributes:
    name: a registered backbone (vidrec_jax.models.backbones).
    checkpoint: a weights file; '' for the installed pretrained weights.
    outputs: the intermediate outputs used as features, e.g. ('stage3', 'stage5').
    grid: each output map is average-pooled to grid x grid cells.
    train_mode: frozen, top_blocks (the last `top_blocks` used blocks) or full.
    top_blocks: see train_mode.
    from_cache: read the frozen backbone's features from the feature cache.
    extract_batch_size: frames per batch when extracting the cache.
  """

  name: str
  checkpoint: str
  outputs: tuple[str, ...]
  grid: int
  train_mode: str
  top_blocks: int
  from_cache: bool
  extract_batch_size: int

  @classmethod
  def from_config(cls, model_cfg) -> "BackboneArgs":
    return cls(**typed_kwargs(cls, model_cfg.backbone, "model.backbone"))


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


def feature_dim(b: BackboneArgs) -> int:
  """Width of the per-frame vector the backbone (or the cache) provides."""
  chans = _shapes(b.name).stage_channels()
  return sum(chans[o] * b.grid * b.grid for o in b.outputs)


def used_blocks(b: BackboneArgs) -> tuple[int, bool]:
  """(number of backbone blocks the configured outputs need, whether the head conv is used)."""
  net = _shapes(b.name)
  return max(net.num_blocks_for(o) for o in b.outputs), any(
      o in ("head", "pooled", "logits") for o in b.outputs)


def frame_vectors(backbone: nnx.Module, frames: jax.Array, outputs, grid: int) -> jax.Array:
  """Normalised frames (N, H, W, 3) -> grid-pooled backbone outputs (N, D), float32. The feature
  cache is written by this same function, so cached and live features are the same numbers."""
  maps = backbone(frames, outputs=tuple(outputs))
  return jnp.concatenate([grid_pool(maps[o], grid) for o in outputs], axis=-1)


@FRAME_ENCODERS.register("backbone")
class BackboneFrameEncoder(FrameEncoder):
  """Backbone intermediate outputs (or cached features) -> per-frame features (B, T, F)."""

  extracts_features = True

  def __init__(self, *, features: int, hidden: int, temporal_difference: str,
               backbone: BackboneArgs, dtype, param_dtype, rngs: nnx.Rngs):
    b = backbone
    self.outputs = tuple(b.outputs)
    self.grid = b.grid
    self.from_cache = b.from_cache
    self.temporal_difference = temporal_difference
    self.features = features
    self.backbone = None if b.from_cache else backbones.BACKBONES.get(b.name).build(
        dtype, param_dtype, rngs)
    d = feature_dim(b)
    self.norm = nnx.LayerNorm(d, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    din = d if temporal_difference == "none" else 2 * d
    self.mix = layers.MLP((din, hidden, features), ("conv_out", "embed"), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)

  @classmethod
  def config_kwargs(cls, model_cfg):
    kw = typed_kwargs(cls.__init__, model_cfg.frame_encoder, "model.frame_encoder",
                      ("dtype", "param_dtype", "rngs", "backbone"))
    return dict(kw, backbone=BackboneArgs.from_config(model_cfg))

  @classmethod
  def clip_inputs(cls, *, temporal_difference: str, backbone: BackboneArgs, **kwargs):
    del kwargs
    adjacent = temporal_difference == "adjacent"
    if backbone.from_cache:
      return ("features", "mask") + (("next_features",) if adjacent else ())
    # From pixels the frame after each sampled one is frame + the pipeline's RGB difference.
    return ("frames", "mask") + (("motion",) if adjacent else ())

  @classmethod
  def validate(cls, config, *, features, hidden, temporal_difference, backbone, **kwargs):
    del kwargs
    b = backbone
    check(b.name in backbones.BACKBONES, "model.backbone.name", b.name,
          f"registered: {', '.join(backbones.BACKBONES.names())}")
    allowed = _shapes(b.name).outputs_allowed()
    check(len(b.outputs) > 0 and all(o in allowed for o in b.outputs), "model.backbone.outputs",
          tuple(b.outputs), f"a non-empty subset of the spatial outputs: {', '.join(allowed)}")
    check(b.train_mode in TRAIN_MODES, "model.backbone.train_mode", b.train_mode,
          f"allowed: {', '.join(TRAIN_MODES)}")
    for f in ("grid", "top_blocks", "extract_batch_size"):
      positive_int(getattr(b, f), f"model.backbone.{f}")
    positive_int(features, "model.frame_encoder.features")
    positive_int(hidden, "model.frame_encoder.hidden")
    check(not b.from_cache or b.train_mode == "frozen", "model.backbone.from_cache",
          b.from_cache, "cached features need model.backbone.train_mode='frozen'")
    check(temporal_difference in TEMPORAL_DIFFERENCES,
          "model.frame_encoder.temporal_difference", temporal_difference,
          f"allowed: {', '.join(TEMPORAL_DIFFERENCES)}")
    need = backbones.BACKBONES.get(b.name).normalization
    check(config.data.normalization == need, "data.normalization", config.data.normalization,
          f"{b.name} was trained on inputs normalised as {need!r}")
    check(config.train.backbone_learning_rate_factor > 0, "train.backbone_learning_rate_factor",
          config.train.backbone_learning_rate_factor, "must be > 0")

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


def backbone_trainable(path: str, b: BackboneArgs) -> bool:
  """Whether a backbone parameter trains (path '/'-joined, relative to the backbone).

  Batch-norm statistics (`mean`, `var`) and the unused classifier never train. `frozen`: the
  whole backbone is frozen. `top_blocks`: only the last `top_blocks` of the blocks the
  configured outputs use, plus the head conv when an output needs it. `full`: every used layer.
  """
  parts = path.split("/")
  if parts[-1] in ("mean", "var") or parts[0] == "classifier" or b.train_mode == "frozen":
    return False
  n_used, head_used = used_blocks(b)
  if parts[0] == "blocks":
    i = int(parts[1])
    return i < n_used and (b.train_mode == "full" or i >= n_used - b.top_blocks)
  if parts[0].startswith("head"):
    return head_used
  # stem and anything before the blocks
  return b.train_mode == "full" or (b.train_mode == "top_blocks" and b.top_blocks >= n_used)


def _backbone_weights(model_cfg):
  b = BackboneArgs.from_config(model_cfg)
  return backbones.converted_params(b.name, b.checkpoint or None)


PRETRAINED_PARTS.register("backbone", PretrainedPart(
    prefix=BACKBONE_PREFIX, weights=_backbone_weights,
    trainable=lambda path, model_cfg: backbone_trainable(path, BackboneArgs.from_config(
        model_cfg)),
    lr_factor="backbone_learning_rate_factor"))
