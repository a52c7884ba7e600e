"""Frame encoders and temporal pooling for clips of any length (padded frames are masked)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from vidrec_jax.models import backbone_encoder
from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import constrain


class ConvFrameEncoder(nnx.Module):
  """A small strided conv net applied to every frame, optionally with a motion input.

  With `motion=True` each frame is stacked with its TSN RGB difference (the next frame minus this
  one, computed by the input pipeline), an early-fusion motion cue: the direction a shape moves
  shows as a signed edge pattern in the difference image.
  """

  def __init__(self, model_cfg: ml_collections.ConfigDict, *, dtype, param_dtype,
               rngs: nnx.Rngs):
    cfg = model_cfg.frame_encoder
    self.motion = cfg.motion
    cin = 6 if cfg.motion else 3
    chans = (cin,) + tuple(cfg.channels)
    self.convs = nnx.List([
        layers.conv(a, b, 3, 2, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for a, b in zip(chans[:-1], chans[1:])])
    self.proj = layers.dense(2 * chans[-1], cfg.features, ("conv_out", "embed"), dtype=dtype,
                             param_dtype=param_dtype, rngs=rngs)
    self.features = cfg.features
    self.dtype = dtype

  def __call__(self, clip: dict) -> tuple[jax.Array, dict]:
    """clip: frames (B, T, H, W, 3), mask (B, T), motion (B, T, H, W, 3) when `motion`.

    Returns per-frame features (B, T, F) and intermediates.
    """
    frames = clip["frames"]
    b, t, h, w, _ = frames.shape
    x = frames.astype(self.dtype)
    if self.motion:
      x = jnp.concatenate([x, clip["motion"].astype(self.dtype)], axis=-1)
    x = x.reshape(b * t, h, w, x.shape[-1])
    x = constrain(x, ("batch", None, None, None))
    for c in self.convs:
      x = jax.nn.relu(c(x))
    # Mean and max over space: the max keeps small objects and edges that a mean dilutes.
    x = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
    x = self.proj(x).reshape(b, t, self.features)
    x = constrain(x, ("batch", "time", "embed"))
    return x, {"frame_features": x}


FRAME_ENCODERS = {"conv": ConvFrameEncoder,
                  "backbone": backbone_encoder.BackboneFrameEncoder}


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  m = mask[..., None].astype(x.dtype)
  return (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


def masked_max(x: jax.Array, mask: jax.Array) -> jax.Array:
  neg = jnp.finfo(x.dtype).min
  out = jnp.where(mask[..., None] > 0, x, neg).max(1)
  return jnp.where(mask.sum(1, keepdims=True) > 0, out, 0.0)


def mean_max(x: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.concatenate([masked_mean(x, mask), masked_max(x, mask)], axis=-1)


# name -> (pooling fn, output width as a multiple of the frame feature width)
POOLINGS = {"masked_mean": (masked_mean, 1), "masked_max": (masked_max, 1),
            "mean_max": (mean_max, 2)}
