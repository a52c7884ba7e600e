"""Next-item recommendation over a catalog: a user's watch history -> a user vector, scored
against every item by a dot product (retrieval with full-sort evaluation, as RecBole's sequential
models).

Items are represented by an ID embedding (out-of-vocabulary row for items unseen in training)
plus projections of per-catalog content tables: the frozen text tower's title embedding
(`model.text.item_tower`) and the video's cached backbone features, mean- and max-pooled over
its frames (`model.frame_encoder.name='backbone'` from the feature cache). So an item that is
new in the test period still has a representation, from its content. The content tables and
each video's vocabulary row reach the model as a `catalog` dict of arrays (row = video id), an
input of the step rather than a parameter.

Training drops item IDs to the out-of-vocabulary row at random (`model.id_dropout`, the same
items in the histories and in the softmax of one step), so the content projections learn to
stand for an item on their own: that is all a new item has.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.config_checks import Needs
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.data.inputs import InputSpec
from vidrec_jax.models import encoders
from vidrec_jax.models import layers
from vidrec_jax.models import text_tower
from vidrec_jax.models import user_towers
from vidrec_jax.models.backbones import part as backbone_part
from vidrec_jax.models.model_registry import MODELS
from vidrec_jax.models.partitioning import constrain

ROW = "row"  # catalog key: the vocabulary row of each video id
SOFTMAXES = ("full", "sampled")  # train.softmax of the next-item objective


def content_tables(cfg) -> dict[str, int]:
  """The catalog content tables the configured model reads, with their widths."""
  out = {}
  if text_tower.title_mode(cfg) == "cached":
    from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
    out["title"] = text.bert_config(cfg.text.name).hidden
  if "features" in encoders.clip_inputs(cfg):
    out["video"] = 2 * backbone_part.model_dim(backbone_part.BackboneArgs.from_config(
        cfg))
  return out


@MODELS.register("sequential")
class SequentialRecommender(nnx.Module):
  """Items: ID + content; users: a history tower (e.g. sasrec) over item representations."""

  def __init__(self, *, num_videos: int, embed_dim: int, vocab_pad_multiple: int,
               content: dict[str, int], user_tower: user_towers.UserTower, id_dropout: float,
               dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    d = embed_dim
    self.item_embed = user_towers.id_table(num_videos, d, vocab_pad_multiple, stddev=0.02, **kw)
    self.content = nnx.Dict({k: layers.MLP((w, d, d), ("embed", "mlp"), **kw)
                             for k, w in sorted(content.items())})
    self.user_tower = user_tower
    self.num_videos, self.id_dropout = num_videos, id_dropout

  def dropped_ids(self, catalog: dict, key: jax.Array | None) -> dict:
    """`catalog` with a random `id_dropout` share of its items' vocabulary rows set to the OOV
    row (training); unchanged without a key."""
    if key is None or self.id_dropout <= 0:
      return catalog
    drop = jax.random.bernoulli(key, self.id_dropout, catalog[ROW].shape)
    return dict(catalog, **{ROW: jnp.where(drop, self.num_videos, catalog[ROW])})

  def item_vectors(self, ids: jax.Array, catalog: dict) -> jax.Array:
    """(...,) video ids -> (..., D) item representations."""
    v = self.item_embed(catalog[ROW][ids])
    for name, proj in self.content.items():
      v = v + proj(catalog[name][ids].astype(jnp.float32))
    return v

  def all_items(self, catalog: dict) -> jax.Array:
    """(N, D) every catalog item, sharded along the catalog axis over the mesh."""
    n = catalog[ROW].shape[0]
    return constrain(self.item_vectors(jnp.arange(n), catalog), ("vocab", None))

  def user_states(self, batch: dict, catalog: dict, *, key=None, all_positions: bool = False
                  ) -> jax.Array:
    """The history tower's user vectors: (B, D), or (B, L, D) at every history position."""
    return self.user_tower(batch, lambda ids: self.item_vectors(ids, catalog), key=key,
                           all_positions=all_positions)

  def states_from_vectors(self, vectors: jax.Array, mask: jax.Array) -> jax.Array:
    """`user_states` from the history items' vectors (..., L, D: `item_vectors`) and mask
    (..., L) instead of video ids (serving)."""
    return user_towers.from_vectors(self.user_tower, vectors, mask)

  @classmethod
  def from_config(cls, cfg, num_users: int, num_videos: int, rngs: nnx.Rngs
                  ) -> "SequentialRecommender":
    kw = dict(dtype=layers.as_dtype(cfg.dtype), param_dtype=layers.as_dtype(cfg.param_dtype),
              rngs=rngs)
    return cls(num_videos=num_videos, embed_dim=cfg.embed_dim,
               vocab_pad_multiple=cfg.vocab_pad_multiple, content=content_tables(cfg),
               user_tower=user_towers.build(cfg, num_users, **kw), id_dropout=cfg.id_dropout,
               **kw)

  @classmethod
  def validate(cls, m, source) -> None:
    """Raises ConfigError on a bad `model` section `m` for this model on dataset `source`."""
    del source
    tower = user_towers.tower_class(m)
    check("history" in tower.inputs and not tower.needs_candidate, "model.user_tower.name",
          m.user_tower.name, "the sequential model scores every item with one user vector: "
          "a history tower that does not need a candidate (sasrec)")

  @classmethod
  def needs(cls, m, source) -> Needs:
    """A history window (`data.history`) its user tower holds, and a softmax it trains with."""
    del source
    limit = user_towers.history_limit(m)

    def history(h) -> None:
      positive_int(h.max_len, "data.history.max_len")
      check(isinstance(h.stride, int) and 1 <= h.stride <= h.max_len, "data.history.stride",
            h.stride, f"an integer in [1, data.history.max_len={h.max_len}]")
      check(limit is None or limit >= h.max_len, "model.user_tower.max_len", limit,
            f"must be >= data.history.max_len={h.max_len}")
    return [("data.history", history),
            ("train.softmax", lambda softmax: check(
                softmax in SOFTMAXES, "train.softmax", softmax,
                f"allowed: {', '.join(SOFTMAXES)}"))]

  @classmethod
  def input_spec(cls, cfg) -> InputSpec:
    """No clips, titles or impression columns: histories and catalog tables only."""
    del cfg
    return InputSpec(clip=(), titles="", query_view=False, impression=())
