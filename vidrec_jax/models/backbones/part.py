"""The pretrained backbone as a part of a frame encoder: the `model.backbone` config section
(`BackboneArgs`), the widths it provides, which of its parameters train, and its registration as
a pretrained part (state initialisation loads its converted weights; models/backbone_encoder.py
is the encoder that runs it, train/extract.py writes its feature cache).
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

TRAIN_MODES = ("frozen", "top_blocks", "full")
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
    whiten: with from_cache, k > 0 serves each frame's cached features through a fixed PCA
      whitening (data/features.py `fit_whitening`, fitted on the training videos' frames): the
      frame head reads k decorrelated unit-variance components instead of D raw features. Fewer
      inputs that a new video's features must generalise through; 0: the raw features.
    whiten_flow: with whiten, each frame's flow-cache field joins its features before the
      whitening as motion histograms (data/motion.py): what the frozen image network misses
      (direction, speed) enters the same components.
  """

  name: str
  checkpoint: str
  outputs: tuple[str, ...]
  grid: int
  train_mode: str
  top_blocks: int
  from_cache: bool
  extract_batch_size: int
  whiten: int = 0
  whiten_flow: bool = False

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


def model_dim(b: BackboneArgs) -> int:
  """Width of the per-frame vector the frame head reads: the whitened width, else the
  backbone's (`feature_dim`)."""
  return b.whiten if b.whiten else feature_dim(b)


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


def validate(b: BackboneArgs) -> None:
  """Raises ConfigError on a bad `model.backbone` section."""
  check(b.name in backbones.BACKBONES, "model.backbone.name", b.name,
        f"registered: {', '.join(backbones.BACKBONES.names())}")
  allowed = _shapes(b.name).outputs_allowed()
  check(len(b.outputs) > 0 and all(o in allowed for o in b.outputs), "model.backbone.outputs",
        tuple(b.outputs), f"a non-empty subset of the spatial outputs: {', '.join(allowed)}")
  check(b.train_mode in TRAIN_MODES, "model.backbone.train_mode", b.train_mode,
        f"allowed: {', '.join(TRAIN_MODES)}")
  for f in ("grid", "top_blocks", "extract_batch_size"):
    positive_int(getattr(b, f), f"model.backbone.{f}")
  check(isinstance(b.whiten, int) and 0 <= b.whiten <= feature_dim(b), "model.backbone.whiten",
        b.whiten, f"0 (off) or a number of components from 1 to the features' width "
        f"{feature_dim(b)}")
  check(not b.whiten or b.from_cache, "model.backbone.whiten", b.whiten,
        "whitening maps the feature cache: it needs model.backbone.from_cache=True")
  check(isinstance(b.whiten_flow, bool) and (b.whiten or not b.whiten_flow),
        "model.backbone.whiten_flow", b.whiten_flow,
        "True or False; True needs model.backbone.whiten > 0")
  check(not b.from_cache or b.train_mode == "frozen", "model.backbone.from_cache",
        b.from_cache, "cached features need model.backbone.train_mode='frozen'")


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
