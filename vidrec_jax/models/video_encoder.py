"""The spatio-temporal video encoder (`model.frame_encoder.name='two_stream'`): an RGB stream and
an optional optical-flow stream, factorised spatial then temporal attention, and the fusion of the
two streams, each part switched and sized by the config:

  frames ──conv──> feature map ──[spatial attention]──> pool ─┐
                                                              ├─ fusion ─ [temporal attention] ─>
  (frame, next frame) ──flow (JAX, on device)──conv──> pool ──┘        (B, T, F) per-frame out

The flow stream reads the optical flow of each sampled frame and the frame after it, as
2 channels (dx, dy) per frame pair, TSN's flow input with one pair per segment. `flow_source`
says where it is estimated (the same estimator, `data/flow.py`, either way): 'device' inside
the jitted step from the raw pixel pairs (`frame_pairs`; no learned parameters, gradients stop
there), 'loader' on the host by the data loader, once per video and kept with its decoded
frames (the `flow` clip op, data/ops.py), or 'cache' offline, once for the whole catalog, into
the flow cache (data/flow_cache.py) that the loader reads; with either of the last two a step
only reads the fields. Its convs can
start from the RGB stream's (`flow_init='rgb'`: the first conv's kernel averaged over the RGB
input channels and repeated over the flow channels, TSN's cross-modality initialisation).

Temporal attention is causal (each frame sees itself and the past: the output at step t never
depends on later frames) or bidirectional, with sinusoidal positions; padded frames are masked as
keys everywhere and their outputs are zeroed, so whatever they hold changes nothing. Every
attention block (spatial, temporal, cross-attention fusion) is a pre-LN residual block that
starts as the identity (attention.ResidualBlock): an encoder with attention starts where the
encoder without it does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.models import attention
from vidrec_jax.models import flow_stream
from vidrec_jax.models import layers
from vidrec_jax.models.encoders import FRAME_ENCODERS
from vidrec_jax.models.encoders import FrameEncoder
from vidrec_jax.models.encoders import conv_stack
from vidrec_jax.models.encoders import mean_max
from vidrec_jax.models.encoders import run_convs
from vidrec_jax.models.flow_stream import FLOW_SOURCES
from vidrec_jax.models.flow_stream import flow_field
from vidrec_jax.models.flow_stream import flow_key
from vidrec_jax.models.partitioning import constrain

TEMPORAL = ("none", "causal", "bidirectional")
FUSIONS = ("concat", "gated", "cross_attention")
FLOW_INITS = ("scratch", "rgb")


def sinusoid(n: int, dim: int) -> np.ndarray:
  """(n, dim) sinusoidal position encodings (Vaswani et al.); any length, no parameters."""
  pos = np.arange(n, dtype=np.float64)[:, None]
  freq = np.exp(-np.log(10000.0) * np.arange(0, dim, 2) / dim)[None]
  out = np.zeros((n, dim), np.float32)
  out[:, 0::2] = np.sin(pos * freq)
  out[:, 1::2] = np.cos(pos * freq)[:, :dim // 2]
  return out


def cross_modality_init(rgb: nnx.List, flow: nnx.List, flow_channels: int) -> None:
  """Copies the RGB convs into the flow convs; the first kernel is averaged over its RGB input
  channels and repeated over the flow's input channels (TSN)."""
  for i, (a, b) in enumerate(zip(rgb, flow)):
    k = a.kernel[...]
    if i == 0:
      k = jnp.repeat(k[:, :, :3].mean(axis=2, keepdims=True), flow_channels, axis=2)
    b.kernel[...] = k.astype(b.kernel[...].dtype)
    b.bias[...] = a.bias[...]


class SpatialAttention(nnx.Module):
  """One residual attention block over each frame's feature-map tokens (h*w of them), with 2-D
  sinusoidal positions."""

  def __init__(self, dim: int, num_heads: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.block = attention.ResidualBlock(dim, num_heads, 2 * dim, dtype=dtype,
                                         param_dtype=param_dtype, rngs=rngs)

  def __call__(self, fmap: jax.Array) -> jax.Array:
    n, h, w, c = fmap.shape
    half = c // 2
    pos = np.concatenate([np.repeat(sinusoid(h, half), w, axis=0),
                          np.tile(sinusoid(w, c - half), (h, 1))], axis=-1)
    mask = jnp.ones((n, h * w, h * w), bool)
    return self.block(fmap.reshape(n, h * w, c), mask, jnp.asarray(pos, fmap.dtype))


@FRAME_ENCODERS.register("two_stream")
class TwoStreamEncoder(FrameEncoder):
  """RGB stream + optional flow stream, fused, with optional spatial and temporal attention.

  Args:
    channels: the RGB stream's conv widths (stride 2 each).
    features: width of the per-frame output.
    motion: stack each frame with its RGB difference (the `conv` encoder's early-fusion cue).
    flow: add the optical-flow stream.
    flow_channels: its conv widths.
    flow_init: 'scratch', or 'rgb' (cross-modality: start from the RGB stream's convs; needs
      flow_channels == channels).
    flow_source: 'device' (estimated in the train step), 'loader' (estimated by the data
      loader on the host, once per video) or 'cache' (estimated offline into the flow cache,
      data/flow_cache.py, by --mode=extract or before training; read by the loader).
    spatial_attention: attend over each frame's feature-map tokens before pooling them.
    temporal_attention: 'none', 'causal' or 'bidirectional' attention across frames.
    attention_layers: temporal attention blocks.
    attention_heads: heads of every attention block.
    fusion: how the streams combine per frame: 'concat' (then a projection), 'gated' (a learned
      per-feature sigmoid gate between them) or 'cross_attention' (RGB frames attend over the
      flow frames they may see, with a residual).
  """

  def __init__(self, *, channels: tuple[int, ...], features: int, motion: bool, flow: bool,
               flow_channels: tuple[int, ...], flow_init: str, flow_source: str,
               spatial_attention: bool,
               temporal_attention: str, attention_layers: int, attention_heads: int,
               fusion: str, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.features, self.dtype, self.motion = features, dtype, motion
    self.temporal, self.fusion_kind = temporal_attention, fusion
    self.flow_source = flow_source
    c = channels[-1]
    self.rgb = conv_stack(6 if motion else 3, channels, **kw)
    self.spatial = (SpatialAttention(c, attention_heads, **kw) if spatial_attention else None)
    self.rgb_proj = layers.dense(2 * c, features, ("conv_out", "embed"), **kw)
    self.flow, self.flow_proj = (flow_stream.conv_layers(flow_channels, features, **kw)
                                 if flow else (None, None))
    if flow:
      if flow_init == "rgb":
        cross_modality_init(self.rgb, self.flow, 2)
      if fusion == "concat":
        self.fuse = layers.dense(2 * features, features, ("mlp", "embed"), **kw)
      elif fusion == "gated":
        self.gate = layers.dense(2 * features, features, ("mlp", "embed"), **kw)
      else:
        self.cross = attention.ResidualBlock(features, attention_heads, 2 * features,
                                             cross=True, **kw)
    self.blocks = nnx.List([
        attention.ResidualBlock(features, attention_heads, 2 * features, **kw)
        for _ in range(attention_layers if temporal_attention != "none" else 0)])

  @classmethod
  def clip_inputs(cls, *, motion: bool, flow: bool, flow_source: str,
                  **kwargs) -> tuple[str, ...]:
    del kwargs
    return (("frames", "mask") + (("motion",) if motion else ())
            + ((flow_key(flow_source),) if flow else ()))

  @classmethod
  def validate(cls, *, channels, features, motion, flow, flow_channels, flow_init,
               flow_source, spatial_attention, temporal_attention, attention_layers,
               attention_heads, fusion):
    for name, chans in (("channels", channels), ("flow_channels", flow_channels)):
      check(len(chans) > 0 and all(isinstance(x, int) and x > 0 for x in chans),
            f"model.frame_encoder.{name}", tuple(chans), "positive integers, at least one")
    positive_int(features, "model.frame_encoder.features")
    positive_int(attention_layers, "model.frame_encoder.attention_layers")
    positive_int(attention_heads, "model.frame_encoder.attention_heads")
    for name, value in (("motion", motion), ("flow", flow),
                        ("spatial_attention", spatial_attention)):
      check(isinstance(value, bool), f"model.frame_encoder.{name}", value, "True or False")
    check(temporal_attention in TEMPORAL, "model.frame_encoder.temporal_attention",
          temporal_attention, f"allowed: {', '.join(TEMPORAL)}")
    check(fusion in FUSIONS, "model.frame_encoder.fusion", fusion,
          f"allowed: {', '.join(FUSIONS)}")
    check(flow_source in FLOW_SOURCES, "model.frame_encoder.flow_source", flow_source,
          f"allowed: {', '.join(FLOW_SOURCES)}")
    check(flow_init in FLOW_INITS, "model.frame_encoder.flow_init", flow_init,
          f"allowed: {', '.join(FLOW_INITS)}")
    check(flow_init != "rgb" or tuple(flow_channels) == tuple(channels),
          "model.frame_encoder.flow_init", flow_init,
          f"'rgb' copies the RGB convs: flow_channels must equal channels={tuple(channels)}")
    heads_ok = [("features", features)]
    if spatial_attention:
      heads_ok.append(("channels[-1]", channels[-1]))
    for name, width in heads_ok:
      check(width % attention_heads == 0, "model.frame_encoder.attention_heads",
            attention_heads, f"must divide {name}={width}")

  def _rgb(self, clip: dict, b: int, t: int) -> jax.Array:
    x = clip["frames"].astype(self.dtype)
    if self.motion:
      x = jnp.concatenate([x, clip["motion"].astype(self.dtype)], axis=-1)
    fmap = run_convs(self.rgb, x.reshape((b * t,) + x.shape[2:]))
    if self.spatial is not None:
      fmap = self.spatial(fmap)
    return self.rgb_proj(mean_max(fmap)).reshape(b, t, self.features)

  def _flow(self, clip: dict, b: int, t: int) -> tuple[jax.Array, jax.Array]:
    field = flow_field(clip, flow_key(self.flow_source), b, t)
    feats = flow_stream.conv_features(self.flow, self.flow_proj, field, b, t, self.dtype)
    return feats, field.reshape((b, t) + field.shape[1:])

  def _attention_mask(self, valid: jax.Array) -> jax.Array:
    if self.temporal == "causal":
      return attention.causal_mask(valid)
    return valid[:, None, :] & jnp.ones_like(valid)[:, :, None]

  def __call__(self, clip: dict, key: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """clip: frames (B, T, H, W, 3), mask (B, T); motion (B, T, H, W, 3) when `motion`;
    frame_pairs (B, T, H, W, 6) raw pixels of each frame and the next when `flow` on 'device';
    flow (B, T, H, W, 2) the loader's flow fields when `flow` from the 'loader'.

    Returns per-frame features (B, T, F) (zeros at padded frames) and intermediates.
    """
    del key  # no dropout
    b, t = clip["frames"].shape[:2]
    valid = clip["mask"] > 0
    keep = valid[..., None]
    x = jnp.where(keep, self._rgb(clip, b, t), 0)
    inter = {"rgb_features": x}
    if self.flow is not None:
      f, field = self._flow(clip, b, t)
      f = jnp.where(keep, f, 0)
      inter.update(flow_features=f, flow=field)
      if self.fusion_kind == "concat":
        x = self.fuse(jnp.concatenate([x, f], axis=-1))
      elif self.fusion_kind == "gated":
        g = jax.nn.sigmoid(self.gate(jnp.concatenate([x, f], axis=-1)))
        x = g * x + (1 - g) * f
      else:
        pos = jnp.asarray(sinusoid(t, self.features), x.dtype)
        x = self.cross(x, self._attention_mask(valid), pos, context=f)
      x = jnp.where(keep, x, 0)
    if len(self.blocks):
      pos = jnp.asarray(sinusoid(t, self.features), x.dtype)
      mask = self._attention_mask(valid)
      for block in self.blocks:
        x = jnp.where(keep, block(x, mask, pos), 0)
    x = constrain(x, ("batch", "time", "embed"))
    inter["frame_features"] = x
    return x, inter
