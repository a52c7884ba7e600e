"""Frame encoders: clips -> per-frame features (B, T, F). Each encoder declares the clip inputs it
reads (`clip_inputs`), so the input pipeline produces exactly those (decoded pixels, the RGB
difference, cached backbone features, ...) and evaluation passes exactly those.

Adding an encoder: a `FrameEncoder` subclass registered in `FRAME_ENCODERS` (its typed
`__init__` arguments are the `model.frame_encoder` config section, minus `name`), whose inputs
are registered clip ops (vidrec_jax/data/ops.py), in any module of vidrec_jax/models (the
registry finds it by itself) or in a module named in `config.imports`. The workdir caches it
reads follow from its clip inputs (`caches`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.config_checks import Needs
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.data.ops import CLIP_OPS
from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import constrain
from vidrec_jax.registry import Registry

# Arguments the model builder passes to every part itself.
SUPPLIED = ("dtype", "param_dtype", "rngs")


class FrameEncoder(nnx.Module):
  """Base: `__call__(clip, key=None) -> (features (B, T, self.features), intermediates)`; `key`
  is given in training only (for encoders with dropout)."""

  features: int
  # Whether `--mode=extract` writes a feature cache for this encoder (a pretrained backbone).
  extracts_features: ClassVar[bool] = False

  @classmethod
  def config_kwargs(cls, model_cfg) -> dict[str, Any]:
    """The typed `__init__` arguments from the model config (checked against the signature)."""
    return typed_kwargs(cls.__init__, model_cfg.frame_encoder, "model.frame_encoder", SUPPLIED)

  @classmethod
  def clip_inputs(cls, **kwargs) -> tuple[str, ...]:
    """The clip keys this encoder reads, given its `config_kwargs`."""
    del kwargs
    return ("frames", "mask")

  @classmethod
  def caches(cls, **kwargs) -> frozenset[str]:
    """The workdir caches this encoder reads, given its `config_kwargs`: those its clip inputs
    declare (data/ops.py `ClipOp.cache`; 'flow': data/flow_cache.py's fields,
    'flow_histograms': its motion histograms only)."""
    return frozenset(CLIP_OPS.get(k).cache for k in cls.clip_inputs(**kwargs)
                     if k in CLIP_OPS and CLIP_OPS.get(k).cache)

  @classmethod
  def inert_args(cls, **kwargs) -> tuple[str, ...]:
    """The arguments that do nothing given its `config_kwargs` (a switched-off stream's
    settings): a resume never counts them as a change (vidrec_jax/config_io.py)."""
    del kwargs
    return ()

  @classmethod
  def validate(cls, **kwargs) -> None:
    """Raises config_checks.ConfigError on a bad argument or combination of this encoder's
    `config_kwargs`."""
    del kwargs

  @classmethod
  def needs(cls, **kwargs) -> Needs:
    """What it needs of other config sections (config_checks.Needs), e.g. the frame size a flow
    grid divides; checked by validate.py."""
    del kwargs
    return []


FRAME_ENCODERS: Registry[type[FrameEncoder]] = Registry("frame encoder", package="vidrec_jax.models")


def conv_stack(cin: int, channels: tuple[int, ...], *, dtype, param_dtype, rngs: nnx.Rngs
               ) -> nnx.List:
  """Stride-2 3x3 convs of widths `channels` from `cin` input channels."""
  chans = (cin,) + tuple(channels)
  return nnx.List([layers.conv(a, b, 3, 2, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                   for a, b in zip(chans[:-1], chans[1:])])


def run_convs(convs: nnx.List, x: jax.Array) -> jax.Array:
  """(N, H, W, C) images through `conv_stack` convs with ReLUs -> (N, h, w, C') maps."""
  x = constrain(x, ("batch", None, None, None))
  for c in convs:
    x = jax.nn.relu(c(x))
  return x


def mean_max(x: jax.Array) -> jax.Array:
  """(N, h, w, C) or (N, S, C) maps -> (N, 2C): mean and max over space; the max keeps small
  objects and edges that a mean dilutes."""
  axes = tuple(range(1, x.ndim - 1))
  return jnp.concatenate([x.mean(axis=axes), x.max(axis=axes)], axis=-1)
NONE = "none"  # `model.frame_encoder.name`: no content tower (ID-only)


def clip_inputs(model_cfg) -> tuple[str, ...]:
  """The clip keys the configured item tower reads; () without a content tower."""
  name = model_cfg.frame_encoder.name
  if name == NONE:
    return ()
  cls = FRAME_ENCODERS.get(name)
  return cls.clip_inputs(**cls.config_kwargs(model_cfg))


def extracts_features(model_cfg) -> bool:
  """Whether the configured encoder has a feature cache for `--mode=extract` to write."""
  name = model_cfg.frame_encoder.name
  return name != NONE and FRAME_ENCODERS.get(name).extracts_features


def flow_cache_form(model_cfg) -> str | None:
  """What the configured item tower reads of the optical-flow cache (data/flow_cache.py):
  'fields' (the flow fields: a flow stream), 'histograms' (only their per-frame motion
  histograms: the feature whitening's `whiten_flow`), or None (no flow cache)."""
  name = model_cfg.frame_encoder.name
  if name == NONE:
    return None
  cls = FRAME_ENCODERS.get(name)
  caches = cls.caches(**cls.config_kwargs(model_cfg))
  return "fields" if "flow" in caches else "histograms" if "flow_histograms" in caches else None


def reads_flow_cache(model_cfg) -> bool:
  """Whether the configured item tower reads the optical-flow cache (data/flow_cache.py), which
  is then written before training."""
  return flow_cache_form(model_cfg) is not None


def build(model_cfg, *, dtype, param_dtype, rngs: nnx.Rngs) -> FrameEncoder | None:
  name = model_cfg.frame_encoder.name
  if name == NONE:
    return None
  cls = FRAME_ENCODERS.get(name)
  return cls(**cls.config_kwargs(model_cfg), dtype=dtype, param_dtype=param_dtype, rngs=rngs)


@FRAME_ENCODERS.register("conv")
class ConvFrameEncoder(FrameEncoder):
  """A small strided conv net applied to every frame, optionally with a motion input.

  With `motion=True` each frame is stacked with its TSN RGB difference (the next frame minus this
  one, computed by the input pipeline), an early-fusion motion cue: the direction a shape moves
  shows as a signed edge pattern in the difference image.
  """

  def __init__(self, *, channels: tuple[int, ...], features: int, motion: bool, dtype,
               param_dtype, rngs: nnx.Rngs):
    self.motion = motion
    self.convs = conv_stack(6 if motion else 3, channels, dtype=dtype, param_dtype=param_dtype,
                            rngs=rngs)
    self.proj = layers.dense(2 * channels[-1], features, ("conv_out", "embed"), dtype=dtype,
                             param_dtype=param_dtype, rngs=rngs)
    self.features = features
    self.dtype = dtype

  @classmethod
  def clip_inputs(cls, *, motion: bool, **kwargs) -> tuple[str, ...]:
    del kwargs
    return ("frames", "mask") + (("motion",) if motion else ())

  @classmethod
  def validate(cls, *, channels, features, motion, **kwargs):
    del kwargs
    check(len(channels) > 0 and all(isinstance(c, int) and c > 0 for c in channels),
          "model.frame_encoder.channels", tuple(channels), "positive integers, at least one")
    positive_int(features, "model.frame_encoder.features")
    check(isinstance(motion, bool), "model.frame_encoder.motion", motion, "True or False")

  def __call__(self, clip: dict, key: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """clip: frames (B, T, H, W, 3), mask (B, T), motion (B, T, H, W, 3) when `motion`.

    Returns per-frame features (B, T, F) and intermediates.
    """
    del key  # no dropout
    frames = clip["frames"]
    b, t, h, w, _ = frames.shape
    x = frames.astype(self.dtype)
    if self.motion:
      x = jnp.concatenate([x, clip["motion"].astype(self.dtype)], axis=-1)
    x = run_convs(self.convs, x.reshape(b * t, h, w, x.shape[-1]))
    x = self.proj(mean_max(x)).reshape(b, t, self.features)
    x = constrain(x, ("batch", "time", "embed"))
    return x, {"frame_features": x}
