"""User towers: a user's inputs -> a user vector. Registered by name (`model.user_tower.name`,
the section's other keys are the tower's typed arguments).

  id      a user-ID embedding (OOV row for users unseen in training) through an MLP
  sasrec  a causal transformer over the watch history's item representations (SASRec): the
          state at each position sees that item and the ones before it
  din     target attention between the history and the candidate item (DIN): the user vector
          depends on the item it is scored with

A tower reads the batch keys it names in `inputs`; history towers get the item
representations from the model (`items`: video ids -> vectors, ID + content, so a history of
cold items still means something). Histories are (..., L) video ids, left-aligned (oldest
first), padded with -1 and masked by `history_mask`.

Adding a user tower: a `UserTower` subclass registered in `USER_TOWERS`.
"""

from __future__ import annotations

import inspect
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.config_checks import ConfigError
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.models import layers
from vidrec_jax.models.attention import LayerNorm
from vidrec_jax.models.attention import TransformerBlock
from vidrec_jax.models.attention import causal_mask
from vidrec_jax.models.attention import dropout
from vidrec_jax.models.partitioning import param
from vidrec_jax.registry import Registry

ItemFn = Callable[[jax.Array], jax.Array]  # video ids (...,) -> item vectors (..., D)


def vocab_rows(num_ids: int, multiple: int) -> int:
  """Rows of an ID table: the ids, one out-of-vocabulary row, then padding up to a multiple of
  `multiple`, so the vocabulary axis splits evenly over any mesh axis size dividing it (a table
  whose rows a mesh axis does not divide would stay replicated on every device). The shape
  depends on the config only, so checkpoints restore onto any mesh."""
  return -(-(num_ids + 1) // multiple) * multiple


def id_table(num_ids: int, dim: int, multiple: int, *, dtype, param_dtype,
             rngs: nnx.Rngs, stddev: float = 0.05) -> nnx.Embed:
  """An ID embedding table with an OOV row (row `num_ids`) and vocabulary padding."""
  return nnx.Embed(vocab_rows(num_ids, multiple), dim, dtype=dtype, param_dtype=param_dtype,
                   rngs=rngs, embedding_init=param(nnx.initializers.normal(stddev),
                                                   ("vocab", "embed")))


class UserTower(nnx.Module):
  """Base: `__call__(inputs, items, ...) -> (..., dim)` user vectors (before normalisation)."""

  inputs: ClassVar[tuple[str, ...]] = ("user",)
  needs_candidate: ClassVar[bool] = False  # the user vector depends on the scored item

  def __call__(self, inputs: dict, items: ItemFn | None = None, *, candidate=None,
               key: jax.Array | None = None, all_positions: bool = False) -> jax.Array:
    raise TypeError("a user tower defines __call__")


USER_TOWERS: Registry[type[UserTower]] = Registry("user tower", package="vidrec_jax.models")


@USER_TOWERS.register("id")
class IdUserTower(UserTower):
  """A user-ID embedding (OOV row for users unseen in training) through an MLP."""

  def __init__(self, *, num_users: int, dim: int, vocab_pad_multiple: int, dtype, param_dtype,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.user_embed = id_table(num_users, dim, vocab_pad_multiple, **kw)
    self.user_proj = layers.MLP((dim, dim, dim), ("embed", "mlp"), **kw)

  def __call__(self, inputs, items=None, *, candidate=None, key=None, all_positions=False):
    return self.user_proj(self.user_embed(inputs["user"]))


def _history(inputs: dict, items: ItemFn) -> tuple[jax.Array, jax.Array]:
  """(item vectors (..., L, D) of the history, zero on padding; its mask (..., L) float)."""
  mask = inputs["history_mask"].astype(jnp.float32)
  ids = jnp.maximum(inputs["history"], 0)
  return items(ids) * mask[..., None], mask


# SASRec's transformer kernels: the default LeCun normal, or N(0, 0.02) as SASRec's (BERT's,
# RecBole's) initialisation. configs/movielens.py records which ML-100K runs chose on valid.
KERNEL_INITS = {"lecun_normal": layers.LECUN, "normal_0.02": nnx.initializers.normal(0.02)}


@USER_TOWERS.register("sasrec")
class SASRecTower(UserTower):
  """SASRec (Kang and McAuley, 2018): item vectors + learned positions, LayerNorm, dropout, then
  causal post-LN transformer blocks. The user vector is the state at the last history item (or,
  with `all_positions`, every state: the next-item objective trains them all)."""

  inputs = ("history", "history_mask")

  def __init__(self, *, num_users: int, dim: int, vocab_pad_multiple: int, max_len: int,
               num_layers: int, num_heads: int, inner_dim: int, dropout_rate: float, dtype,
               param_dtype, rngs: nnx.Rngs, kernel_init: str = "lecun_normal"):
    del num_users, vocab_pad_multiple  # a history tower has no user table
    if kernel_init not in KERNEL_INITS:
      raise ConfigError(f"config.model.user_tower.kernel_init={kernel_init!r} is not allowed; "
                        f"allowed: {', '.join(KERNEL_INITS)}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.position = nnx.Embed(max_len, dim, embedding_init=param(
        nnx.initializers.normal(0.02), (None, "embed")), **kw)
    self.norm = LayerNorm(dim, eps=1e-12, dtype=dtype, param_dtype=param_dtype)
    self.blocks = nnx.List([TransformerBlock(dim, num_heads, inner_dim, dropout_rate,
                                             kernel_init=KERNEL_INITS[kernel_init], **kw)
                            for _ in range(num_layers)])
    self.max_len, self.dropout_rate = max_len, dropout_rate

  def __call__(self, inputs, items=None, *, candidate=None, key=None, all_positions=False):
    x, mask = _history(inputs, items)
    lead, (n, d) = x.shape[:-2], x.shape[-2:]
    if n > self.max_len:
      raise ValueError(f"history of length {n} exceeds the tower's max_len {self.max_len}")
    x, mask = x.reshape(-1, n, d), mask.reshape(-1, n)
    keys = jax.random.split(key, len(self.blocks) + 1) if key is not None else None
    x = self.norm(x + self.position(jnp.arange(n))[None])
    x = dropout(x, self.dropout_rate, None if keys is None else keys[0])
    attend = causal_mask(mask > 0)
    for i, block in enumerate(self.blocks):
      x = block(x, attend, None if keys is None else keys[i + 1])
    x = x * mask[..., None]
    if all_positions:
      return x.reshape(lead + (n, d))
    last = jnp.maximum(mask.sum(-1).astype(jnp.int32) - 1, 0)
    return jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0].reshape(lead + (d,))


@USER_TOWERS.register("din")
class DINTower(UserTower):
  """DIN (Zhou et al., 2018): each history item is weighted by an MLP of (item, candidate, their
  difference and product), without a softmax (weights keep their scale, as in the paper); the
  user vector is the weighted sum, plus the history mean."""

  inputs = ("history", "history_mask")
  needs_candidate = True

  def __init__(self, *, num_users: int, dim: int, vocab_pad_multiple: int, hidden: int,
               dtype, param_dtype, rngs: nnx.Rngs):
    del num_users, vocab_pad_multiple
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attention = layers.MLP((4 * dim, hidden, 1), ("embed", "mlp"), **kw)
    self.proj = layers.dense(2 * dim, dim, ("embed", "mlp"), **kw)

  def __call__(self, inputs, items=None, *, candidate=None, key=None, all_positions=False):
    if candidate is None:
      raise ValueError("the din user tower scores a history against a candidate item")
    h, mask = _history(inputs, items)  # (..., L, D)
    c = jnp.broadcast_to(candidate[..., None, :], h.shape)
    w = self.attention(jnp.concatenate([h, c, h - c, h * c], axis=-1))[..., 0] * mask
    pooled = (w[..., None] * h).sum(-2)
    mean = h.sum(-2) / jnp.maximum(mask.sum(-1, keepdims=True), 1.0)
    return self.proj(jnp.concatenate([pooled, mean], axis=-1))


def from_vectors(tower: UserTower, vectors: jax.Array, mask: jax.Array,
                 candidate: jax.Array | None = None) -> jax.Array:
  """A history tower's user vectors from its history items' vectors (..., L, H) and mask
  (..., L) rather than from video ids: serving computes every item's vector once, at export,
  and feeds each request's history as vectors."""
  positions = jnp.broadcast_to(jnp.arange(mask.shape[-1]), mask.shape)
  return tower({"history": positions, "history_mask": mask},
               lambda ids: jnp.take_along_axis(vectors, ids[..., None], axis=-2),
               candidate=candidate)


SUPPLIED = ("num_users", "dim", "vocab_pad_multiple", "dtype", "param_dtype", "rngs")


def tower_class(model_cfg) -> type[UserTower]:
  return USER_TOWERS.get(model_cfg.user_tower.name)


def reads_history(model_cfg) -> bool:
  """Whether the configured user tower reads a watch history (sasrec, din)."""
  return "history" in tower_class(model_cfg).inputs


def tower_args(model_cfg) -> dict:
  """The typed arguments of the `model.user_tower` section (a ConfigError when they do not fit
  the tower's signature)."""
  return typed_kwargs(tower_class(model_cfg).__init__, model_cfg.user_tower, "model.user_tower",
                      SUPPLIED)


def history_limit(model_cfg) -> int | None:
  """The longest watch history the configured tower takes: its `max_len` argument, as given or
  by its signature default; None for a tower without one."""
  args = tower_args(model_cfg)
  if "max_len" in args:
    return args["max_len"]
  param = inspect.signature(tower_class(model_cfg).__init__).parameters.get("max_len")
  return None if param is None or param.default is inspect.Parameter.empty else param.default


def build(model_cfg, num_users: int, *, dtype, param_dtype, rngs: nnx.Rngs) -> UserTower:
  """The tower of the `model.user_tower` section (name + typed arguments)."""
  cls, args = tower_class(model_cfg), tower_args(model_cfg)
  return cls(num_users=num_users, dim=model_cfg.embed_dim,
             vocab_pad_multiple=model_cfg.vocab_pad_multiple, dtype=dtype,
             param_dtype=param_dtype, rngs=rngs, **args)
