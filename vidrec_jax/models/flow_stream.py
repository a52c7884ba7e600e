"""The optical-flow stream of a frame encoder, one implementation for every encoder that has one
(the two_stream encoder, models/video_encoder.py, and the pretrained backbone's second stream,
models/backbone_encoder.py).

Where the flow comes from (`flow_source`, a clip input):
  'device': estimated inside the jitted step from raw pixel pairs (`frame_pairs`; the
    estimator of data/flow.py, no learned parameters, gradients stop there);
  'loader': estimated by the data loader on the host, once per video (the `flow` clip op);
  'cache': estimated offline into the flow cache (data/flow_cache.py) that the loader reads; beside
    cached backbone features it arrives as `cached_flow`.
What reads it (`flow_stream`): 'conv' (small stride-2 convs over each frame's field, mean and
max pooled, projected to the encoder's width: TSN's flow input with one pair per segment) or
'histogram' (fixed motion statistics, no parameters).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.data import flow as flow_lib
from vidrec_jax.data import motion
from vidrec_jax.models import layers
from vidrec_jax.models.encoders import conv_stack
from vidrec_jax.models.encoders import mean_max
from vidrec_jax.models.encoders import run_convs

FLOW_SOURCES = ("device", "loader", "cache")
FLOW_STREAMS = ("conv", "histogram")
PAIR_KEY = "frame_pairs"  # clip input: each sampled frame and the next, raw 0..255 (K, H, W, 6)
FLOW_KEY = "flow"  # clip input: the loader's flow of each sampled frame to the next (K, H, W, 2)
CACHED_FLOW_KEY = "cached_flow"  # clip input: the flow cache's fields beside cached features


def flow_key(flow_source: str) -> str:
  """The clip input a flow stream reads: raw frame pairs ('device') or the fields."""
  return PAIR_KEY if flow_source == "device" else FLOW_KEY


def flow_field(clip: dict, key: str, b: int, t: int) -> jax.Array:
  """(B*T, H, W, 2) optical flow of each sampled frame to the next, in pixels: read from the
  clip input `key`, or estimated here from raw frame pairs when `key` is PAIR_KEY (no learned
  parameters: gradients stop there)."""
  if key == PAIR_KEY:
    pairs = jax.lax.stop_gradient(clip[PAIR_KEY].astype(jnp.float32))
    pairs = pairs.reshape((b * t,) + pairs.shape[2:])
    return flow_lib.dense_flow(pairs[..., :3], pairs[..., 3:])
  field = clip[key].astype(jnp.float32)
  return field.reshape((b * t,) + field.shape[2:])


def scaled_flow(field: jax.Array, dtype) -> jax.Array:
  """Flow in units of 1/16 of the frame height: the same motion gives the same input at any
  frame size."""
  return motion.flow_units(field, dtype)


def flow_histograms(field: jax.Array) -> jax.Array:
  """(N, H, W, 2) flow in pixels -> (N, HISTOGRAM_FEATURES) motion statistics of each frame, no
  parameters: data/motion.py `flow_histograms` in jax.numpy."""
  return motion.flow_histograms(field, jnp)


def coarser(field: jax.Array, size: int) -> jax.Array:
  """(N, H, W, 2) flow -> (N, size, size * W / H, 2): the mean flow over cells, in pixels of the
  smaller grid; `size` divides H (0 or H: unchanged)."""
  n, h, w, _ = field.shape
  if not size or h == size:
    return field
  r = h // size
  return field.reshape(n, h // r, r, w // r, r, 2).mean(axis=(2, 4)) / r


def conv_layers(flow_channels: tuple[int, ...], features: int, *, dtype, param_dtype,
                rngs: nnx.Rngs) -> tuple[nnx.List, nnx.Module]:
  """The conv stream's parameters: stride-2 convs over the 2 flow channels, and the projection
  of their pooled maps to `features` (an encoder keeps them as `flow` and `flow_proj`)."""
  kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
  convs = conv_stack(2, tuple(flow_channels), **kw)
  return convs, layers.dense(2 * flow_channels[-1], features, ("conv_out", "embed"), **kw)


def conv_features(convs: nnx.List, proj: nnx.Module, field: jax.Array, b: int, t: int,
                  dtype) -> jax.Array:
  """(B*T, H, W, 2) flow fields -> per-frame features (B, T, F) through `conv_layers`."""
  fmap = run_convs(convs, scaled_flow(field, dtype))
  return proj(mean_max(fmap)).reshape(b, t, -1)
