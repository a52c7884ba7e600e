"""In-batch contrastive loss of the retrieval tasks (text matching, visual query)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_LOGIT_SCALE = 100.0  # CLIP's clip of the learned inverse temperature


def contrastive_loss(queries: jax.Array, targets: jax.Array, log_scale: jax.Array,
                     valid: jax.Array, group: jax.Array) -> jax.Array:
  """Symmetric in-batch softmax loss: query i belongs with target i, the other rows are
  negatives.

  Args:
    queries: (B, E) unit-norm embeddings.
    targets: (B, E) unit-norm embeddings.
    log_scale: scalar log inverse temperature (learnable; clipped at log 100).
    valid: (B,) rows that take part (0 for clips that could not be decoded).
    group: (B,) int; rows of one group are the same item (same video, same title): as negatives
      of each other they would be accidental hits, so those pairs are masked out.

  Returns:
    The mean over valid rows of (query->target + target->query cross-entropy) / 2.
  """
  scale = jnp.exp(jnp.minimum(log_scale.astype(jnp.float32), jnp.log(MAX_LOGIT_SCALE)))
  logits = scale * jnp.einsum("qe,te->qt", queries.astype(jnp.float32),
                              targets.astype(jnp.float32))
  n = logits.shape[0]
  eye = jnp.eye(n, dtype=bool)
  ok = valid.astype(bool)
  keep = (eye | (group[:, None] != group[None, :])) & ok[:, None] & ok[None, :]
  logits = jnp.where(keep, logits, -1e9)
  diag = jnp.diagonal(logits)
  q2t = jax.nn.logsumexp(logits, axis=1) - diag
  t2q = jax.nn.logsumexp(logits, axis=0) - diag
  w = ok.astype(jnp.float32)
  return jnp.sum(w * (q2t + t2q) / 2) / jnp.maximum(w.sum(), 1.0)
