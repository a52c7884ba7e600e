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
With `model.frame_encoder.flow=True` a second, trained stream reads the optical flow of each
sampled frame to the next (the flow cache's fields, or the loader's or the step's estimate from
pixels, as the two_stream encoder's flow stream: models/video_encoder.py) through small stride-2
convs, and its per-frame vector joins the backbone's before the frame head: the two-stream
design of Simonyan & Zisserman (NeurIPS 2014) with an ImageNet-pretrained spatial stream. A
pretrained image network sees each frame alone; where the thing on screen moves, and how fast,
is what the flow carries. `flow_stream='histogram'` replaces the convs by fixed motion statistics
of each frame's flow (orientation and magnitude histograms of the moving pixels, their share,
the mean flow: `flow_histograms`), no parameters.

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
from vidrec_jax.data import motion
from vidrec_jax.data.motion import HISTOGRAM_FEATURES
from vidrec_jax.models import backbones
from vidrec_jax.models import attention
from vidrec_jax.models import layers
from vidrec_jax.models import video_encoder
from vidrec_jax.models.encoders import FRAME_ENCODERS
from vidrec_jax.models.encoders import FrameEncoder
from vidrec_jax.models.encoders import conv_stack
from vidrec_jax.models.encoders import mean_max
from vidrec_jax.models.encoders import run_convs
from vidrec_jax.models.partitioning import constrain

TRAIN_MODES = ("frozen", "top_blocks", "full")
TEMPORAL_DIFFERENCES = ("adjacent", "segments", "none")
BACKBONE_PREFIX = "frame_encoder/backbone/"
CACHED_FLOW_KEY = "cached_flow"  # clip input: the flow cache's fields beside cached features
FLOW_STREAMS = ("conv", "histogram")


def flow_histograms(field: jax.Array) -> jax.Array:
  """(N, H, W, 2) flow in pixels -> (N, HISTOGRAM_FEATURES) motion statistics of each frame, no
  parameters: data/motion.py `flow_histograms` in jax.numpy."""
  return motion.flow_histograms(field, jnp)


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


@FRAME_ENCODERS.register("backbone")
class BackboneFrameEncoder(FrameEncoder):
  """Backbone intermediate outputs (or cached features) -> per-frame features (B, T, F)."""

  extracts_features = True

  def __init__(self, *, features: int, hidden: int, temporal_difference: str,
               backbone: BackboneArgs, flow: bool = False,
               flow_channels: tuple[int, ...] = (16, 32, 48), flow_source: str = "cache",
               flow_size: int = 0, flow_stream: str = "conv", input_dropout: float = 0.0,
               frame_average: bool = False, dtype, param_dtype, rngs: nnx.Rngs):
    b = backbone
    self.outputs = tuple(b.outputs)
    self.grid = b.grid
    self.from_cache = b.from_cache
    self.temporal_difference = temporal_difference
    self.features = features
    self.backbone = None if b.from_cache else backbones.BACKBONES.get(b.name).build(
        dtype, param_dtype, rngs)
    d = model_dim(b)
    self.norm = nnx.LayerNorm(d, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    din = d if temporal_difference == "none" else 2 * d
    self.dtype = dtype
    self.flow_key = _flow_key(flow_source, b.from_cache) if flow else None
    self.flow_size, self.flow_stream = flow_size, flow_stream
    self.input_dropout, self.frame_average = input_dropout, frame_average
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if flow and flow_stream == "conv":
      self.flow = conv_stack(2, tuple(flow_channels), **kw)
      self.flow_proj = layers.dense(2 * flow_channels[-1], features, ("conv_out", "embed"), **kw)
      din += features
    elif flow:
      din += HISTOGRAM_FEATURES
    self.mix = layers.MLP((din, hidden, features), ("conv_out", "embed"), **kw)

  @classmethod
  def config_kwargs(cls, model_cfg):
    kw = typed_kwargs(cls.__init__, model_cfg.frame_encoder, "model.frame_encoder",
                      ("dtype", "param_dtype", "rngs", "backbone"))
    return dict(kw, backbone=BackboneArgs.from_config(model_cfg))

  @classmethod
  def clip_inputs(cls, *, temporal_difference: str, backbone: BackboneArgs, flow: bool = False,
                  flow_source: str = "cache", **kwargs):
    del kwargs
    adjacent = temporal_difference == "adjacent"
    flow_in = (_flow_key(flow_source, backbone.from_cache),) if flow else ()
    if backbone.from_cache:
      return ("features", "mask") + (("next_features",) if adjacent else ()) + flow_in
    # From pixels the frame after each sampled one is frame + the pipeline's RGB difference.
    return ("frames", "mask") + (("motion",) if adjacent else ()) + flow_in

  @classmethod
  def caches(cls, **kwargs):
    # With whiten_flow, the whitening joins the flow cache's motion histograms.
    return super().caches(**kwargs) | (frozenset({"flow"}) if kwargs["backbone"].whiten_flow
                                       else frozenset())

  @classmethod
  def validate(cls, config, *, features, hidden, temporal_difference, backbone, flow=False,
               flow_channels=(16, 32, 48), flow_source="cache", flow_size=0,
               flow_stream="conv", input_dropout=0.0, frame_average=False, **kwargs):
    del kwargs
    b = backbone
    check(isinstance(flow, bool), "model.frame_encoder.flow", flow, "True or False")
    check(len(flow_channels) > 0 and all(isinstance(x, int) and x > 0 for x in flow_channels),
          "model.frame_encoder.flow_channels", tuple(flow_channels),
          "positive integers, at least one")
    check(isinstance(flow_size, int) and (flow_size == 0 or (
        flow_size > 0 and config.data.frame_size % flow_size == 0)),
          "model.frame_encoder.flow_size", flow_size,
          f"0 (the frames' size) or a divisor of data.frame_size={config.data.frame_size}")
    check(isinstance(frame_average, bool), "model.frame_encoder.frame_average", frame_average,
          "True or False")
    check(isinstance(input_dropout, (int, float)) and 0.0 <= input_dropout < 1.0,
          "model.frame_encoder.input_dropout", input_dropout, "a rate in [0, 1)")
    check(flow_stream in FLOW_STREAMS, "model.frame_encoder.flow_stream", flow_stream,
          f"allowed: {', '.join(FLOW_STREAMS)}")
    check(flow_source in video_encoder.FLOW_SOURCES, "model.frame_encoder.flow_source",
          flow_source, f"allowed: {', '.join(video_encoder.FLOW_SOURCES)}")
    check(not (flow and b.from_cache) or flow_source == "cache", "model.frame_encoder.flow_source",
          flow_source, "with cached backbone features (model.backbone.from_cache) the flow comes "
          "from the flow cache too: 'cache'")
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

  def __call__(self, clip: dict, key: jax.Array | None = None) -> tuple[jax.Array, dict]:
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
    inter = {}
    if self.flow_key is not None:
      b, t = mask.shape
      field = video_encoder.flow_field(clip, self.flow_key, b, t)
      if self.flow_stream == "histogram":
        f = flow_histograms(field).reshape(b, t, -1) * mask[..., None]
      else:
        if self.flow_size and field.shape[1] != self.flow_size:
          n, h, w, _ = field.shape  # mean flow over cells; pixels rescaled to the new size
          r = h // self.flow_size
          field = field.reshape(n, h // r, r, w // r, r, 2).mean(axis=(2, 4)) / r
        fmap = run_convs(self.flow, video_encoder.scaled_flow(field, self.dtype))
        f = self.flow_proj(mean_max(fmap)).reshape(b, t, -1) * mask[..., None]
      inter["flow_features"] = f
      x = jnp.concatenate([x, f.astype(x.dtype)], axis=-1)
    if self.frame_average:  # every valid frame gets the clip's mean input: what stays put
      m = mask[..., None].astype(x.dtype)
      mean = jnp.sum(x * m, axis=1, keepdims=True) / jnp.maximum(jnp.sum(m, 1, keepdims=True), 1)
      x = jnp.broadcast_to(mean, x.shape) * m
    # Training only: each input of the frame head dropped at this rate, so that no few feature
    # values can single out a training video (the content tower must generalise to new ones).
    x = attention.dropout(x, self.input_dropout, key)
    x = self.mix(x)
    x = constrain(x, ("batch", "time", "embed"))
    return x, dict(inter, frame_features=x)


def _flow_key(flow_source: str, from_cache: bool) -> str:
  """The clip input of the flow stream: the flow cache's fields beside cached features, else
  the two_stream encoder's input for `flow_source`."""
  return CACHED_FLOW_KEY if from_cache else video_encoder.flow_key(flow_source)


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
