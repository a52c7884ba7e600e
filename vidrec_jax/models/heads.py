"""Task heads, each bundled with its loss and its prediction; adding a task is registering one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vidrec_jax.models import layers


class _ScalarHead(nnx.Module):
  """One output per example from the shared trunk's hidden vector."""

  def __init__(self, hidden: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.out = layers.dense(hidden, 1, ("mlp", None), dtype=dtype, param_dtype=param_dtype,
                            rngs=rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    return self.out(h)[..., 0].astype(jnp.float32)


class ClickHead(_ScalarHead):
  """Click logit; sigmoid cross-entropy.  A learned position bias explains away position in
  training only (`position_logit`), so scores are position-free at evaluation."""

  label = "click"

  @staticmethod
  def loss(outputs: dict, batch: dict) -> jax.Array:
    logit = outputs["click"] + outputs.get("position_logit", 0.0)
    return optax.sigmoid_binary_cross_entropy(logit, batch["click"])

  @staticmethod
  def predict(raw: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(raw)


class WatchTimeHead(_ScalarHead):
  """Watch time in seconds (0 when not clicked); squared error."""

  label = "watch_time"

  def __call__(self, h: jax.Array) -> jax.Array:
    return jax.nn.softplus(super().__call__(h))

  @staticmethod
  def loss(outputs: dict, batch: dict) -> jax.Array:
    return jnp.square(outputs["watch_time"] - batch["watch_time"])

  @staticmethod
  def predict(raw: jax.Array) -> jax.Array:
    return raw


class LikeHead(_ScalarHead):
  """Like logit; sigmoid cross-entropy."""

  label = "like"

  @staticmethod
  def loss(outputs: dict, batch: dict) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(outputs["like"], batch["like"])

  @staticmethod
  def predict(raw: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(raw)


HEADS = {"click": ClickHead, "watch_time": WatchTimeHead, "like": LikeHead}
