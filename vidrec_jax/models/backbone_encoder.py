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
sampled frame to the next (the flow cache's fields, or the loader's or the step's estimate
from pixels; the flow stream of models/flow_stream.py, shared with the two_stream encoder)
through small stride-2 convs, and its per-frame vector joins the backbone's before the frame
head: the two-stream design of Simonyan & Zisserman (NeurIPS 2014) with an ImageNet-pretrained
spatial stream. A pretrained image network sees each frame alone; where the thing on screen
moves, and how fast, is what the flow carries. `flow_stream='histogram'` replaces the convs by
fixed motion statistics of each frame's flow (orientation and magnitude histograms of the moving
pixels, their share, the mean flow: `flow_histograms`), no parameters.

The same head runs on precomputed features: with `model.backbone.from_cache=True` the clip carries
`features` (B, T, D) written by `--mode=extract`, and no backbone is built at all.

The backbone is a registered pretrained part ("backbone", models/backbones/part.py with its config
section `BackboneArgs`): state initialisation loads its converted weights, and
`model.backbone.train_mode` decides which of its parameters train.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.config_checks import Needs
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.data.motion import HISTOGRAM_FEATURES
from vidrec_jax.models import attention
from vidrec_jax.models import backbones
from vidrec_jax.models import flow_stream as flows
from vidrec_jax.models import layers
from vidrec_jax.models.backbones import part
from vidrec_jax.models.backbones.part import BackboneArgs
from vidrec_jax.models.encoders import FRAME_ENCODERS
from vidrec_jax.models.encoders import FrameEncoder
from vidrec_jax.models.flow_stream import FLOW_SOURCES
from vidrec_jax.models.flow_stream import FLOW_STREAMS
from vidrec_jax.models.partitioning import constrain

TEMPORAL_DIFFERENCES = ("adjacent", "segments", "none")


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
    d = part.model_dim(b)
    self.norm = nnx.LayerNorm(d, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    din = d if temporal_difference == "none" else 2 * d
    self.dtype = dtype
    self.flow_key = _flow_key(flow_source, b.from_cache) if flow else None
    self.flow_size, self.flow_stream = flow_size, flow_stream
    self.input_dropout, self.frame_average = input_dropout, frame_average
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    if flow and flow_stream == "conv":
      self.flow, self.flow_proj = flows.conv_layers(flow_channels, features, **kw)
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
  def inert_args(cls, *, flow: bool = False, **kwargs):
    del kwargs
    return () if flow else ("flow_channels", "flow_size", "flow_source", "flow_stream")

  @classmethod
  def caches(cls, **kwargs):
    # With whiten_flow, the whitening joins the flow cache's motion histograms: the cache
    # need hold no more than those unless a flow stream reads the fields.
    return super().caches(**kwargs) | (frozenset({"flow_histograms"})
                                       if kwargs["backbone"].whiten_flow else frozenset())

  @classmethod
  def validate(cls, *, features, hidden, temporal_difference, backbone, flow=False,
               flow_channels=(16, 32, 48), flow_source="cache", flow_size=0,
               flow_stream="conv", input_dropout=0.0, frame_average=False, **kwargs):
    del kwargs
    b = backbone
    check(isinstance(flow, bool), "model.frame_encoder.flow", flow, "True or False")
    check(len(flow_channels) > 0 and all(isinstance(x, int) and x > 0 for x in flow_channels),
          "model.frame_encoder.flow_channels", tuple(flow_channels),
          "positive integers, at least one")
    check(isinstance(flow_size, int) and flow_size >= 0, "model.frame_encoder.flow_size",
          flow_size, "0 (the frames' size) or a divisor of data.frame_size")
    check(isinstance(frame_average, bool), "model.frame_encoder.frame_average", frame_average,
          "True or False")
    check(isinstance(input_dropout, (int, float)) and 0.0 <= input_dropout < 1.0,
          "model.frame_encoder.input_dropout", input_dropout, "a rate in [0, 1)")
    check(flow_stream in FLOW_STREAMS, "model.frame_encoder.flow_stream", flow_stream,
          f"allowed: {', '.join(FLOW_STREAMS)}")
    check(flow_source in FLOW_SOURCES, "model.frame_encoder.flow_source",
          flow_source, f"allowed: {', '.join(FLOW_SOURCES)}")
    check(not (flow and b.from_cache) or flow_source == "cache", "model.frame_encoder.flow_source",
          flow_source, "with cached backbone features (model.backbone.from_cache) the flow comes "
          "from the flow cache too: 'cache'")
    part.validate(b)
    positive_int(features, "model.frame_encoder.features")
    positive_int(hidden, "model.frame_encoder.hidden")
    check(temporal_difference in TEMPORAL_DIFFERENCES,
          "model.frame_encoder.temporal_difference", temporal_difference,
          f"allowed: {', '.join(TEMPORAL_DIFFERENCES)}")

  @classmethod
  def needs(cls, *, backbone, flow_size=0, **kwargs) -> Needs:
    """The frame size its flow grid divides, the normalisation its backbone was trained on, and
    a positive learning-rate factor for the backbone."""
    del kwargs
    need = backbones.BACKBONES.get(backbone.name).normalization
    return [
        ("data.frame_size", lambda size: check(
            flow_size == 0 or size % flow_size == 0, "model.frame_encoder.flow_size", flow_size,
            f"0 (the frames' size) or a divisor of data.frame_size={size}")),
        ("data.normalization", lambda norm: check(
            norm == need, "data.normalization", norm,
            f"{backbone.name} was trained on inputs normalised as {need!r}")),
        ("train.backbone_learning_rate_factor", lambda factor: check(
            factor > 0, "train.backbone_learning_rate_factor", factor, "must be > 0"))]

  def frame_vectors(self, frames: jax.Array) -> jax.Array:
    return part.frame_vectors(self.backbone, frames, self.outputs, self.grid)

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
      field = flows.flow_field(clip, self.flow_key, b, t)
      if self.flow_stream == "histogram":
        f = flows.flow_histograms(field).reshape(b, t, -1)
      else:
        f = flows.conv_features(self.flow, self.flow_proj, flows.coarser(field, self.flow_size),
                                b, t, self.dtype)
      f = f * mask[..., None]
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
  return flows.CACHED_FLOW_KEY if from_cache else flows.flow_key(flow_source)


