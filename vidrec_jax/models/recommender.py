"""Two-tower multi-task recommender: a content item tower that works for cold-start videos, a
user tower, task heads on a shared trunk, and retrieval tasks (text matching, visual query) on
the same content tower.

The towers are separate methods so evaluation and retrieval encode each video once and each user
once, then score pairs cheaply.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from vidrec_jax.models import encoders
from vidrec_jax.models import heads as heads_lib
from vidrec_jax.models import layers
from vidrec_jax.models import text as text_lib
from vidrec_jax.models.partitioning import constrain, param


def _rms_normalize(x: jax.Array) -> jax.Array:
  """Unit root-mean-square vectors: the u*i interaction starts at O(1) instead of at the product
  of two small initial scales, which otherwise stalls learning of the content tower."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)


def vocab_rows(num_ids: int, multiple: int) -> int:
  """Rows of an ID table: the ids, one out-of-vocabulary row, then padding up to a multiple of
  `multiple`, so the vocabulary axis splits evenly over any mesh axis size dividing it (a table
  whose rows a mesh axis does not divide would stay replicated on every device). The shape
  depends on the config only, so checkpoints restore onto any mesh."""
  return -(-(num_ids + 1) // multiple) * multiple


TASKS = ("text_match", "visual_query")
TEXT_PREFIX = "text_encoder/"


def _logit_scale() -> nnx.Param:
  """A learnable softmax temperature, stored as log(1 / 0.07) (CLIP's initial value)."""
  return nnx.Param(jnp.asarray(np.log(1 / 0.07), jnp.float32))


class TwoTowerRecommender(nnx.Module):
  """Item tower (pixels -> frame encoder -> temporal pooling, plus a video-ID embedding with an
  out-of-vocabulary row and, optionally, the title's sentence embedding), user tower (user-ID
  embedding), shared trunk and registered heads.

  Retrieval tasks (`cfg.tasks`) share the content tower: `text_match` projects the title
  embedding and the visual content vector into one space; `visual_query` projects the content
  vectors of two views of a video into another.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, num_users: int, num_videos: int, *,
               rngs: nnx.Rngs):
    dt, pdt = layers.as_dtype(cfg.dtype), layers.as_dtype(cfg.param_dtype)
    kw = dict(dtype=dt, param_dtype=pdt, rngs=rngs)
    d = cfg.embed_dim
    self.id_dropout = cfg.id_dropout
    self.num_videos = num_videos
    emb_init = param(nnx.initializers.normal(0.05), ("vocab", "embed"))
    rows = functools.partial(vocab_rows, multiple=cfg.vocab_pad_multiple)
    self.user_embed = nnx.Embed(rows(num_users), d, embedding_init=emb_init, **kw)
    self.video_embed = (nnx.Embed(rows(num_videos), d, embedding_init=emb_init, **kw)
                        if cfg.use_video_id else None)
    if cfg.frame_encoder.name == "none":
      self.frame_encoder, self.pool = None, None
    else:
      if cfg.frame_encoder.name not in encoders.FRAME_ENCODERS:
        raise ValueError(f"model.frame_encoder.name={cfg.frame_encoder.name!r} unknown; "
                         f"registered: {sorted(encoders.FRAME_ENCODERS)} or 'none'")
      self.frame_encoder = encoders.FRAME_ENCODERS[cfg.frame_encoder.name](cfg, **kw)
      pool_fn, mult = encoders.POOLINGS[cfg.pooling]
      self.pool = pool_fn
      self.content_proj = layers.MLP((cfg.frame_encoder.features * mult, d, d), ("embed", "mlp"),
                                     **kw)
    self.user_proj = layers.MLP((d, d, d), ("embed", "mlp"), **kw)
    self.trunk = layers.MLP((3 * d, cfg.hidden, cfg.hidden), ("embed", "mlp"), **kw)
    self.heads = nnx.Dict({h: heads_lib.HEADS[h](cfg.hidden, **kw) for h in cfg.heads})
    self._text_tower(cfg, kw)
    self.tasks = tuple(cfg.tasks)
    r = cfg.retrieval_dim
    if "text_match" in self.tasks:
      self.match_text = layers.dense(self.text_dim, r, ("embed", "mlp"), **kw)
      self.match_video = layers.dense(d, r, ("embed", "mlp"), **kw)
      self.match_scale = _logit_scale()
    if "visual_query" in self.tasks:
      self.query_proj = layers.dense(d, r, ("embed", "mlp"), **kw)
      self.query_scale = _logit_scale()
    self.position_logit = (nnx.Param(jnp.zeros((cfg.max_positions,), jnp.float32))
                           if cfg.position_bias else None)
    self.max_positions = cfg.max_positions

  def _text_tower(self, cfg: ml_collections.ConfigDict, kw: dict) -> None:
    """The title's sentence encoder (when it trains; a frozen one is read from the text cache)
    and the title projection of the item tower."""
    t = cfg.text
    uses_text = bool(t.item_tower) or "text_match" in cfg.tasks
    bert = text_lib.bert_config(t.name) if uses_text else None
    self.text_dim = bert.hidden if uses_text else 0
    self.text_encoder = (text_lib.BertEncoder(bert, **kw)
                         if uses_text and t.train_mode != "frozen" else None)
    self.title_proj = (layers.MLP((bert.hidden, cfg.embed_dim, cfg.embed_dim), ("embed", "mlp"),
                                  **kw) if uses_text and t.item_tower else None)

  def title_embedding(self, batch: dict) -> jax.Array:
    """(B, text_dim) unit-norm title embeddings: cached (`title_emb`) or encoded from tokens."""
    if self.text_encoder is None:
      return batch["title_emb"].astype(jnp.float32)
    states = self.text_encoder(batch["title_ids"], batch["title_mask"])
    return text_lib.l2_normalize(text_lib.mean_pool(states, batch["title_mask"]))

  def encode_content(self, clip: dict) -> tuple[jax.Array, dict]:
    """The visual content vector (B, D) of clips, before IDs and titles are added."""
    feats, inter = self.frame_encoder(clip)
    pooled = self.pool(feats, clip["mask"])
    inter["pooled"] = pooled
    return self.content_proj(pooled), inter

  def retrieval_embeddings(self, batch: dict, content: jax.Array,
                           title: jax.Array | None = None) -> dict[str, jax.Array]:
    """Unit-norm embeddings of each retrieval task's sides for clips with content vectors
    `content`: `text` and `video` (text matching), `visual` (visual query, both sides).
    `title`: the title embeddings if already computed."""
    out = {}
    if "text_match" in self.tasks:
      title = self.title_embedding(batch) if title is None else title
      out["text"] = text_lib.l2_normalize(self.match_text(title))
      out["video"] = text_lib.l2_normalize(self.match_video(content))
    if "visual_query" in self.tasks:
      out["visual"] = text_lib.l2_normalize(self.query_proj(content))
    return out

  def retrieval_pairs(self, batch: dict, content: jax.Array, title: jax.Array | None = None
                      ) -> dict[str, tuple[jax.Array, jax.Array, jax.Array]]:
    """Per task: (queries, targets, logit scale); row i of queries belongs with row i of
    targets. The visual query's queries come from the second view (`query_*` keys)."""
    emb = self.retrieval_embeddings(batch, content, title)
    out = {}
    if "text_match" in self.tasks:
      out["text_match"] = (emb["text"], emb["video"], self.match_scale[...])
    if "visual_query" in self.tasks:
      view = {k[len("query_"):]: v for k, v in batch.items() if k.startswith("query_")}
      query, _ = self.encode_content(view)
      out["visual_query"] = (text_lib.l2_normalize(self.query_proj(query)), emb["visual"],
                             self.query_scale[...])
    return out

  def encode_items(self, clip: dict, video, *, train: bool = False, key=None
                   ) -> tuple[jax.Array, dict]:
    """Item vectors (B, D) from clips (frames (B, T, H, W, 3), mask (B, T), optional motion;
    title inputs when the item tower reads titles) and video vocab rows (B,)."""
    inter = {}
    vec = 0.0
    if self.frame_encoder is not None:
      vec, inter = self.encode_content(clip)
      inter["content"] = vec
    if self.title_proj is not None:
      inter["title"] = self.title_embedding(clip)
      vec = vec + self.title_proj(inter["title"])
    if self.video_embed is not None:
      if train and self.id_dropout > 0:
        # Dropping IDs to the OOV row teaches the tower to serve videos it has never seen.
        drop = jax.random.bernoulli(key, self.id_dropout, video.shape)
        video = jnp.where(drop, self.num_videos, video)
      vec = vec + self.video_embed(video)
    vec = constrain(_rms_normalize(jnp.asarray(vec)), ("batch", "embed"))
    inter["item"] = vec
    return vec, inter

  def encode_users(self, user) -> jax.Array:
    u = _rms_normalize(self.user_proj(self.user_embed(user)))
    return constrain(u, ("batch",) + (None,) * (u.ndim - 2) + ("embed",))

  def score(self, u: jax.Array, i: jax.Array) -> dict[str, jax.Array]:
    """Raw head outputs for paired user and item vectors (B, D) each."""
    h = jax.nn.gelu(self.trunk(jnp.concatenate([u, i, u * i], axis=-1)))
    return {name: head(h) for name, head in self.heads.items()}

  def __call__(self, batch: dict, *, train: bool = False, key=None) -> tuple[dict, dict]:
    """Head outputs (B, M) for B clips, each with M impressions (batch["user"] is (B, M))."""
    i, inter = self.encode_items(batch, batch["video"], train=train, key=key)
    u = self.encode_users(batch["user"])
    out = self.score(u, jnp.broadcast_to(i[:, None, :], u.shape))
    if train and self.position_logit is not None:
      pos = jnp.clip(batch["position"], 0, self.max_positions - 1)
      out["position_logit"] = self.position_logit[...][pos]
    inter["user"] = u
    if self.tasks:
      inter["retrieval"] = self.retrieval_pairs(batch, inter["content"], inter.get("title"))
    return out, inter


MODELS = {"two_tower": TwoTowerRecommender}


def build(cfg: ml_collections.ConfigDict, num_users: int, num_videos: int, rngs: nnx.Rngs):
  """Builds the model named by `cfg.name` from the registry."""
  if cfg.name not in MODELS:
    raise ValueError(f"model.name={cfg.name!r} unknown; registered: {sorted(MODELS)}")
  return MODELS[cfg.name](cfg, num_users, num_videos, rngs=rngs)
