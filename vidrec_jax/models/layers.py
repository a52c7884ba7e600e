"""Dense and convolution layers with compute/param dtypes and logical axis names on parameters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.models.partitioning import param

LECUN = nnx.initializers.lecun_normal()  # the default kernel initialisation
_zeros = nnx.initializers.zeros_init()


def dense(din: int, dout: int, names: tuple[str, str], *, dtype, param_dtype, rngs: nnx.Rngs,
          kernel_init=LECUN) -> nnx.Linear:
  return nnx.Linear(din, dout, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                    kernel_init=param(kernel_init, names), bias_init=param(_zeros, (names[1],)))


def conv(din: int, dout: int, kernel: int, stride: int, *, dtype, param_dtype, rngs: nnx.Rngs
         ) -> nnx.Conv:
  return nnx.Conv(din, dout, (kernel, kernel), (stride, stride), dtype=dtype,
                  param_dtype=param_dtype, rngs=rngs,
                  kernel_init=param(LECUN, (None, None, "conv_in", "conv_out")),
                  bias_init=param(_zeros, ("conv_out",)))


class MLP(nnx.Module):
  """Dense layers with GELU between them (none after the last). `zero_last`: the last layer's
  kernel starts at zero, so the MLP starts as a constant (its bias) and grows into use."""

  def __init__(self, dims: tuple[int, ...], names: tuple[str, str], *, dtype, param_dtype,
               rngs: nnx.Rngs, zero_last: bool = False):
    n = len(dims) - 1
    self.layers = nnx.List([
        dense(a, b, names, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
              kernel_init=_zeros if zero_last and j == n - 1 else LECUN)
        for j, (a, b) in enumerate(zip(dims[:-1], dims[1:]))])

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i + 1 < len(self.layers):
        x = jax.nn.gelu(x)
    return x


def as_dtype(name: str):
  """'float32' / 'bfloat16' / 'float16' -> jnp dtype."""
  return jnp.dtype(name)
