"""Temporal poolings: per-frame features (B, T, F) and a frame mask (B, T) -> one vector per clip,
for clips of any length (padded frames are masked out). Registered by name (`model.pooling`);
each pooling says how wide its output is. A pooling's own keyword arguments (beside `features`
and the dtypes) come from the `model.pooling_args` section, checked against its signature, and
its `validate` checks their values: `model.pooling_args=dict(levels=(1, 3))` for a pyramid of
one and three runs.

Adding a pooling: a `Pooling` subclass here or in a file of its own under vidrec_jax/models/
(`POOLINGS` finds it by name), or in a module named in `config.imports`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.models import layers
from vidrec_jax.registry import Registry

SUPPLIED = ("features", "dtype", "param_dtype", "rngs")  # what the model passes itself


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

  @classmethod
  def validate(cls, **kwargs) -> None:
    """Raises ConfigError on bad values of this pooling's own arguments (`model.pooling_args`)."""
    del kwargs


POOLINGS: Registry[type[Pooling]] = Registry("pooling", package="vidrec_jax.models")


def pooling_args(model_cfg) -> dict:
  """The typed arguments of the configured pooling from `model.pooling_args` (a ConfigError when
  they do not fit its signature or its `validate`)."""
  cls = POOLINGS.get(model_cfg.pooling)
  kwargs = typed_kwargs(cls.__init__, model_cfg.pooling_args, "model.pooling_args", SUPPLIED)
  cls.validate(**kwargs)
  return kwargs


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


def segment_means(x: jax.Array, mask: jax.Array, segments: int) -> jax.Array:
  """(B, T, F) -> (B, segments, F): masked means over `segments` equal runs of each clip's valid
  frames, in order (valid frame j of L falls in run floor(j * segments / L)); a run with no
  frame (a clip shorter than `segments`) is 0."""
  m = mask.astype(jnp.float32)
  length = jnp.maximum(m.sum(1, keepdims=True), 1.0)
  rank = jnp.cumsum(m, axis=1) - 1.0
  seg = jnp.floor(rank * segments / length).astype(jnp.int32)
  onehot = jax.nn.one_hot(seg, segments, dtype=jnp.float32) * m[..., None]  # (B, T, S)
  sums = jnp.einsum("bts,btf->bsf", onehot, x.astype(jnp.float32))
  return (sums / jnp.maximum(onehot.sum(1)[..., None], 1.0)).astype(x.dtype)


class AttentionPool(nnx.Module):
  """A learned query attends over the valid frames (one head): what to keep is learned."""

  def __init__(self, features: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.score = layers.dense(features, 1, ("embed", None), dtype=dtype,
                              param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, mask):
    logits = self.score(x)[..., 0].astype(jnp.float32)
    logits = jnp.where(mask > 0, logits, jnp.finfo(jnp.float32).min)
    w = jax.nn.softmax(logits, axis=1) * (mask.sum(1, keepdims=True) > 0)
    return jnp.einsum("bt,btf->bf", w.astype(x.dtype), x)


@POOLINGS.register("attention")
class AttentionPooling(Pooling):
  """Attention pooling over frames."""

  def __init__(self, features: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    super().__init__(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attend = AttentionPool(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, x, mask):
    return self.attend(x, mask)


@POOLINGS.register("pyramid")
class PyramidPooling(Pooling):
  """A temporal pyramid: masked means over 1, 2 and 4 equal runs of the valid frames (`levels`;
  in order, so which half came first shows), plus attention pooling; any number of frames gives
  one ((1 + sum(levels)) * features,) vector."""

  def __init__(self, features: int, *, levels: tuple[int, ...] = (1, 2, 4), dtype, param_dtype,
               rngs: nnx.Rngs):
    """`levels`: the numbers of equal runs, one masked mean per run at each level."""
    super().__init__(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attend = AttentionPool(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.levels = tuple(levels)
    self.out_features = (sum(self.levels) + 1) * features

  @classmethod
  def validate(cls, *, levels=(1, 2, 4)) -> None:
    check(len(levels) > 0 and all(isinstance(n, int) and n > 0 for n in levels)
          and len(set(levels)) == len(levels), "model.pooling_args.levels", tuple(levels),
          "distinct positive numbers of runs, at least one")

  def __call__(self, x, mask):
    parts = [segment_means(x, mask, s).reshape(x.shape[0], -1) for s in self.levels]
    return jnp.concatenate(parts + [self.attend(x, mask)], axis=-1)
