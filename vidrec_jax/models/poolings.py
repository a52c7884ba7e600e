"""Temporal poolings: per-frame features (B, T, F) and a frame mask (B, T) -> one vector per clip,
for clips of any length (padded frames are masked out). Registered by name (`model.pooling`);
each pooling says how wide its output is.

Adding a pooling: a `Pooling` subclass here (or in a file of its own) registered in `POOLINGS`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.registry import Registry


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  m = mask[..., None].astype(x.dtype)
  return (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


def masked_max(x: jax.Array, mask: jax.Array) -> jax.Array:
  neg = jnp.finfo(x.dtype).min
  out = jnp.where(mask[..., None] > 0, x, neg).max(1)
  return jnp.where(mask.sum(1, keepdims=True) > 0, out, 0.0)


class Pooling(nnx.Module):
  """(B, T, F) features and (B, T) mask -> (B, out_features)."""

  def __init__(self, features: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    del dtype, param_dtype, rngs
    self.out_features = features

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    raise TypeError("a pooling defines __call__")


POOLINGS: Registry[type[Pooling]] = Registry("pooling")


@POOLINGS.register("masked_mean")
class MeanPool(Pooling):

  def __call__(self, x, mask):
    return masked_mean(x, mask)


@POOLINGS.register("masked_max")
class MaxPool(Pooling):

  def __call__(self, x, mask):
    return masked_max(x, mask)


@POOLINGS.register("mean_max")
class MeanMaxPool(Pooling):
  """Mean and max side by side: the max keeps brief events that a mean dilutes."""

  def __init__(self, features: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    super().__init__(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.out_features = 2 * features

  def __call__(self, x, mask):
    return jnp.concatenate([masked_mean(x, mask), masked_max(x, mask)], axis=-1)
