"""Layers shared by the ported backbones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.models.partitioning import param
from vidrec_jax.models.partitioning import param_value


class FrozenBatchNorm(nnx.Module):
  """Batch norm in inference form: y = (x - mean) / sqrt(var + eps) * scale + bias.

  `mean` and `var` are parameters that the trainer never updates (their optimizer label is
  always frozen): fine-tuning on small, highly correlated video batches keeps the ImageNet
  statistics, which is what detection and video work commonly does with pretrained backbones.
  """

  def __init__(self, n: int, *, param_dtype, eps: float):
    names = ("conv_out",)
    self.eps = eps
    self.scale = param_value(jnp.ones((n,), param_dtype), names)
    self.bias = param_value(jnp.zeros((n,), param_dtype), names)
    self.mean = param_value(jnp.zeros((n,), param_dtype), names)
    self.var = param_value(jnp.ones((n,), param_dtype), names)

  def __call__(self, x: jax.Array) -> jax.Array:
    mul = self.scale[...].astype(jnp.float32) * jax.lax.rsqrt(
        self.var[...].astype(jnp.float32) + self.eps)
    add = self.bias[...].astype(jnp.float32) - self.mean[...].astype(jnp.float32) * mul
    return (x.astype(jnp.float32) * mul + add).astype(x.dtype)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow "SAME" padding (low, high) of one spatial dim; the extra pixel goes high."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int, impl: str = "auto"
                   ) -> jax.Array:
  """Depthwise conv with "SAME" padding. x: (N, H, W, C); kernel: (k, k, 1, C), Flax layout.

  `impl="shift"` sums k*k shifted, strided slices times the per-channel taps. On CPU this is
  7-40x faster than XLA's grouped convolution for MBConv shapes (benchmarks/backbone_speed.py),
  and it is what `auto` picks there; elsewhere `auto` uses `lax.conv_general_dilated`.
  """
  k = kernel.shape[0]
  if impl == "auto":
    impl = "shift" if jax.default_backend() == "cpu" else "lax"
  if impl == "lax":
    return jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), (stride, stride), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1])
  _, h, w, _ = x.shape
  (pt, pb), (pl, pr) = same_padding(h, k, stride), same_padding(w, k, stride)
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  oh, ow = -(-h // stride), -(-w // stride)
  taps = kernel[:, :, 0, :].astype(x.dtype)
  out = None
  for i in range(k):
    for j in range(k):
      rows = slice(i, i + (oh - 1) * stride + 1, stride)
      cols = slice(j, j + (ow - 1) * stride + 1, stride)
      term = xp[:, rows, cols, :] * taps[i, j]
      out = term if out is None else out + term
  return out


class DepthwiseConv(nnx.Module):
  """Depthwise k x k conv without bias; the kernel has nnx.Conv's (k, k, 1, C) layout."""

  def __init__(self, channels: int, kernel: int, stride: int, *, dtype, param_dtype, rngs,
               impl: str = "auto"):
    init = param(nnx.initializers.lecun_normal(), (None, None, None, "conv_out"))
    self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, 1, channels), param_dtype))
    self.stride, self.dtype, self.impl = stride, dtype, impl

  def __call__(self, x: jax.Array) -> jax.Array:
    return depthwise_conv(x.astype(self.dtype), self.kernel[...], self.stride, self.impl)


def pointwise(conv: nnx.Conv, x: jax.Array) -> jax.Array:
  """A 1x1, stride-1, bias-free nnx.Conv applied as a matmul (faster than a conv on CPU)."""
  k = conv.kernel[...]
  return jnp.einsum("nhwc,cd->nhwd", x.astype(conv.dtype or x.dtype), k[0, 0].astype(
      conv.dtype or x.dtype))


class StagedBackbone:
  """Bookkeeping shared by backbones built as a stem, blocks grouped into named stages, and an
  optional head. Subclasses set `OUTPUTS` (ending with the two vector outputs `pooled`,
  `logits`), `STEM_CHANNELS`, `HEAD_CHANNELS` (0 without a head conv) and `self.specs`, whose
  items have `.output` (the stage name) and `.cout`."""

  OUTPUTS: tuple[str, ...] = ()
  STEM_CHANNELS = 0
  HEAD_CHANNELS = 0

  def stage_channels(self) -> dict[str, int]:
    """Channels of every spatial output."""
    out = {"stem": self.STEM_CHANNELS}
    for s in self.specs:
      out[s.output] = s.cout
    if self.HEAD_CHANNELS:
      out["head"] = self.HEAD_CHANNELS
    return out

  def outputs_allowed(self) -> tuple[str, ...]:
    """Spatial outputs a frame encoder can take (maps, not vectors)."""
    return self.OUTPUTS[:-2]

  def num_blocks_for(self, output: str) -> int:
    """How many blocks (counted across stages, in order) run before `output` exists."""
    if output == "stem":
      return 0
    names = [s.output for s in self.specs]
    if output in names:
      return len(names) - names[::-1].index(output)
    return len(self.specs)
