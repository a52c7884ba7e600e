"""`policy`: a softmax policy over the whole corpus (Chen et al., WSDM 2019). The user state is
the watch-history user tower (e.g. sasrec) over item representations (ID embedding, with the
out-of-vocabulary row for videos never logged, plus a projection of the video's content
factors, so cold-start videos get logits too); logits = state . item vector for every video.

With `estimate_behaviour`, a second head on the same state (gradient stopped into the state,
as in the paper) learns the behaviour policy from the logged slates, for logs whose
propensities were not recorded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.models import layers
from vidrec_jax.models import user_towers
from vidrec_jax.models.model_registry import MODELS
from vidrec_jax.models.partitioning import constrain
from vidrec_jax.models.sequential import ROW
from vidrec_jax.models.sequential import SequentialRecommender

FACTORS = "factors"  # catalog key: each video's content factor vector


@MODELS.register("policy")
class PolicyModel(SequentialRecommender):
  """Items: ID + content factors; state: a history tower; logits over every video."""

  def __init__(self, *, content_width: int, estimate_behaviour: bool, item_bias: bool,
               embed_dim: int, dtype, param_dtype, rngs: nnx.Rngs, **kw):
    super().__init__(content={FACTORS: content_width}, embed_dim=embed_dim, dtype=dtype,
                     param_dtype=param_dtype, rngs=rngs, **kw)
    # A logit bias per video (OOV row for unlogged ones), as in YouTube's softmax: what makes
    # a video worth showing to anyone (its quality) needs no direction in the user state.
    self.item_bias = (user_towers.id_table(self.num_videos, 1, kw["vocab_pad_multiple"],
                                           stddev=0.0, dtype=dtype, param_dtype=param_dtype,
                                           rngs=rngs) if item_bias else None)
    self.behaviour = (layers.dense(embed_dim, embed_dim, ("embed", "mlp"), dtype=dtype,
                                   param_dtype=param_dtype, rngs=rngs)
                      if estimate_behaviour else None)

  def logits(self, batch: dict, catalog: dict, *, key=None) -> tuple[jax.Array, jax.Array]:
    """(policy logits (B, N) over every catalog video, the user states (B, D))."""
    states = self.user_states(batch, catalog, key=key)
    items = constrain(self.all_items(catalog), ("catalog", None))
    logits = jnp.einsum("bd,nd->bn", states, items, preferred_element_type=jnp.float32)
    if self.item_bias is not None:
      logits = logits + self.item_bias(catalog[ROW])[None, :, 0].astype(jnp.float32)
    return logits, states

  def behaviour_logits(self, states: jax.Array, catalog: dict) -> jax.Array:
    """The estimated behaviour policy's logits (B, N); no gradient into states or items."""
    if self.behaviour is None:
      raise ValueError("model.estimate_behaviour is off: there is no behaviour head")
    items = jax.lax.stop_gradient(self.all_items(catalog))
    return jnp.einsum("bd,nd->bn", self.behaviour(jax.lax.stop_gradient(states)), items,
                      preferred_element_type=jnp.float32)

  @classmethod
  def from_config(cls, cfg, num_users: int, num_videos: int, rngs: nnx.Rngs) -> "PolicyModel":
    kw = dict(dtype=layers.as_dtype(cfg.dtype), param_dtype=layers.as_dtype(cfg.param_dtype),
              rngs=rngs)
    return cls(content_width=cfg.content_width, estimate_behaviour=cfg.estimate_behaviour,
               item_bias=cfg.item_bias,
               num_videos=num_videos, embed_dim=cfg.embed_dim,
               vocab_pad_multiple=cfg.vocab_pad_multiple,
               user_tower=user_towers.build(cfg, num_users, **kw), id_dropout=cfg.id_dropout,
               **kw)

  @classmethod
  def validate(cls, m, source) -> None:
    super().validate(m, source)
    for f in ("content_width", "estimate_behaviour", "item_bias"):
      check(f in m, f"model.{f}", None, "the policy model needs it (configs/rl.py sets it)")
    positive_int(m.content_width, "model.content_width")
    for f in ("estimate_behaviour", "item_bias"):
      check(isinstance(m[f], bool), f"model.{f}", m[f], "expected True or False")
