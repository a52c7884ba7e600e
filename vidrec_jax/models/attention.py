"""Multi-head attention and a post-LayerNorm transformer block, with masks and dropout driven by
explicit keys (the model is used functionally inside jit)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import param_value


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout; the identity without a key (evaluation) or at rate 0."""
  if key is None or rate <= 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def causal_mask(valid: jax.Array) -> jax.Array:
  """(B, L) valid positions -> (B, L, L) bool: query i sees keys j <= i that are valid."""
  n = valid.shape[-1]
  causal = jnp.tril(jnp.ones((n, n), bool))
  return causal[None] & valid[:, None, :].astype(bool)


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis with float32 statistics."""

  def __init__(self, n: int, *, eps: float, dtype, param_dtype):
    self.scale = param_value(jnp.ones((n,), param_dtype), ("embed",))
    self.bias = param_value(jnp.zeros((n,), param_dtype), ("embed",))
    self.eps, self.dtype = eps, dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...].astype(jnp.float32)
            + self.bias[...].astype(jnp.float32)).astype(self.dtype)


class MultiHeadAttention(nnx.Module):
  """Attention of (B, L, D) queries over themselves, or over a (B, S, D) `context` (cross-
  attention), with a (B, L, L or S) boolean mask of allowed (query, key) pairs; a query row with
  no allowed key attends to nothing (outputs zeros)."""

  def __init__(self, dim: int, num_heads: int, dropout_rate: float, *, dtype, param_dtype,
               rngs: nnx.Rngs, kernel_init=layers.LECUN):
    if dim % num_heads:
      raise ValueError(f"attention width {dim} is not a multiple of {num_heads} heads")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs, kernel_init=kernel_init)
    self.query = layers.dense(dim, dim, ("embed", "heads"), **kw)
    self.key = layers.dense(dim, dim, ("embed", "heads"), **kw)
    self.value = layers.dense(dim, dim, ("embed", "heads"), **kw)
    self.out = layers.dense(dim, dim, ("heads", "embed"), **kw)
    self.num_heads, self.dropout_rate, self.dtype = num_heads, dropout_rate, dtype

  def __call__(self, x: jax.Array, mask: jax.Array, key: jax.Array | None = None,
               context: jax.Array | None = None, values: jax.Array | None = None
               ) -> jax.Array:
    """`context` gives the keys (and values), `values` the values when they differ (e.g.
    without the positions the keys carry)."""
    b, n, d = x.shape
    h = self.num_heads
    context = x if context is None else context
    values = context if values is None else values

    def split(t):
      return t.reshape(b, t.shape[1], h, d // h).transpose(0, 2, 1, 3)
    q, k, v = split(self.query(x)), split(self.key(context)), split(self.value(values))
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    scores = scores / math.sqrt(d // h)
    allowed = mask[:, None]
    scores = jnp.where(allowed, scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1) * allowed.any(-1, keepdims=True)
    probs = dropout(probs, self.dropout_rate, key).astype(self.dtype)
    ctx = jnp.einsum("bhqk,bhkd->bhqd", probs, v).transpose(0, 2, 1, 3).reshape(b, n, d)
    return self.out(ctx)


class TransformerBlock(nnx.Module):
  """Post-LN block (SASRec / BERT): x = LN(x + drop(Attn(x))); x = LN(x + drop(FFN(x)))."""

  def __init__(self, dim: int, num_heads: int, inner_dim: int, dropout_rate: float, *, dtype,
               param_dtype, rngs: nnx.Rngs, eps: float = 1e-12, kernel_init=layers.LECUN):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs, kernel_init=kernel_init)
    self.attention = MultiHeadAttention(dim, num_heads, dropout_rate, **kw)
    self.attention_norm = LayerNorm(dim, eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.inner = layers.dense(dim, inner_dim, ("embed", "mlp"), **kw)
    self.outer = layers.dense(inner_dim, dim, ("mlp", "embed"), **kw)
    self.output_norm = LayerNorm(dim, eps=eps, dtype=dtype, param_dtype=param_dtype)
    self.dropout_rate = dropout_rate

  def __call__(self, x: jax.Array, mask: jax.Array, key: jax.Array | None = None
               ) -> jax.Array:
    keys = jax.random.split(key, 3) if key is not None else (None,) * 3
    x = self.attention_norm(x + dropout(self.attention(x, mask, keys[0]), self.dropout_rate,
                                        keys[1]))
    y = self.outer(jax.nn.gelu(self.inner(x), approximate=False))
    return self.output_norm(x + dropout(y, self.dropout_rate, keys[2]))


class ResidualBlock(nnx.Module):
  """Pre-LN block whose residual branches are gated by learned scalars that start at zero
  (ReZero, Bachlechner et al. 2020): x = x + a * Attn(LN(x)); x = x + b * FFN(LN(x)). The block
  starts as the identity, so adding it to an encoder starts from the encoder without it, and a
  scalar gate grows the branch gently under Adam (a zero-initialised matrix would grow every
  entry at the learning rate). Positions enter queries and keys only, never the values or the
  residual stream. With `cross`, `__call__`'s `context` gives the keys and values."""

  def __init__(self, dim: int, num_heads: int, inner_dim: int, *, cross: bool = False, dtype,
               param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.attention = MultiHeadAttention(dim, num_heads, 0.0, **kw)
    self.attention_norm = LayerNorm(dim, eps=1e-6, dtype=dtype, param_dtype=param_dtype)
    self.context_norm = (LayerNorm(dim, eps=1e-6, dtype=dtype, param_dtype=param_dtype)
                         if cross else None)
    self.inner = layers.dense(dim, inner_dim, ("embed", "mlp"), **kw)
    self.outer = layers.dense(inner_dim, dim, ("mlp", "embed"), **kw)
    self.output_norm = LayerNorm(dim, eps=1e-6, dtype=dtype, param_dtype=param_dtype)
    self.gates = param_value(jnp.zeros((2,), param_dtype), (None,))

  def __call__(self, x: jax.Array, mask: jax.Array, pos: jax.Array | float = 0.0,
               context: jax.Array | None = None) -> jax.Array:
    a, b = self.gates[...].astype(x.dtype)
    q = self.attention_norm(x)
    kv = q if context is None else self.context_norm(context)
    x = x + a * self.attention(q + pos, mask, context=kv + pos, values=kv)
    return x + b * self.outer(jax.nn.gelu(self.inner(self.output_norm(x))))
