"""User towers: a user's inputs -> a user vector (..., D). Registered by name (`model.user_tower`).

Adding a user tower: a `UserTower` subclass registered in `USER_TOWERS`; `inputs` names the
batch keys it reads (the pipeline and the evaluator provide them).
"""

from __future__ import annotations

from typing import ClassVar

import jax
from flax import nnx

from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import param
from vidrec_jax.registry import Registry


def vocab_rows(num_ids: int, multiple: int) -> int:
  """Rows of an ID table: the ids, one out-of-vocabulary row, then padding up to a multiple of
  `multiple`, so the vocabulary axis splits evenly over any mesh axis size dividing it (a table
  whose rows a mesh axis does not divide would stay replicated on every device). The shape
  depends on the config only, so checkpoints restore onto any mesh."""
  return -(-(num_ids + 1) // multiple) * multiple


def id_table(num_ids: int, dim: int, multiple: int, *, dtype, param_dtype,
             rngs: nnx.Rngs) -> nnx.Embed:
  """An ID embedding table with an OOV row (row `num_ids`) and vocabulary padding."""
  return nnx.Embed(vocab_rows(num_ids, multiple), dim, dtype=dtype, param_dtype=param_dtype,
                   rngs=rngs, embedding_init=param(nnx.initializers.normal(0.05),
                                                   ("vocab", "embed")))


class UserTower(nnx.Module):
  """Base: `__call__(batch_inputs) -> (..., dim)` user vectors (before normalisation)."""

  inputs: ClassVar[tuple[str, ...]] = ("user",)


USER_TOWERS: Registry[type[UserTower]] = Registry("user tower")


@USER_TOWERS.register("id")
class IdUserTower(UserTower):
  """A user-ID embedding (OOV row for users unseen in training) through an MLP."""

  def __init__(self, *, num_users: int, dim: int, vocab_pad_multiple: int, dtype, param_dtype,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.user_embed = id_table(num_users, dim, vocab_pad_multiple, **kw)
    self.user_proj = layers.MLP((dim, dim, dim), ("embed", "mlp"), **kw)

  def __call__(self, inputs: dict) -> jax.Array:
    return self.user_proj(self.user_embed(inputs["user"]))
