"""The two-tower multi-task recommender (`model.name='two_tower'`): a content item tower that
works for cold-start videos, a user tower, task heads on a shared trunk, and retrieval tasks on
the same content tower.

The towers are separate methods so evaluation and retrieval encode each video once and each user
once, then score pairs cheaply. The model takes typed arguments and built parts; `from_config`
is the one place that reads the `model` config section and assembles the registered parts,
`input_spec` says what the input pipeline must deliver for it, `validate` checks the section and
`record_terms` says how its config is recorded: all in models/two_tower_config.py.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.config_checks import Needs
from vidrec_jax.config_io import PartTerms
from vidrec_jax.data.inputs import InputSpec
from vidrec_jax.models import encoders
from vidrec_jax.models import experts
from vidrec_jax.models import layers
from vidrec_jax.models import poolings
from vidrec_jax.models import sequential
from vidrec_jax.models import text_tower
from vidrec_jax.models import two_tower_config
from vidrec_jax.models.heads import HEADS
from vidrec_jax.models.item_features import ITEM_FEATURES
from vidrec_jax.models.model_registry import MODELS
from vidrec_jax.models.partitioning import constrain
from vidrec_jax.models.partitioning import param_value
from vidrec_jax.models.tasks import TASKS
from vidrec_jax.models.user_towers import UserTower
from vidrec_jax.models.user_towers import from_vectors
from vidrec_jax.models.user_towers import id_table

def _rms_normalize(x: jax.Array) -> jax.Array:
  """Unit root-mean-square vectors: the u*i interaction starts at O(1) instead of at the product
  of two small initial scales, which otherwise stalls learning of the content tower."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + 1e-6)


@MODELS.register("two_tower")
class TwoTowerRecommender(nnx.Module):
  """Item tower (clip -> frame encoder -> temporal pooling, plus a video-ID embedding with an
  out-of-vocabulary row and, optionally, the title's sentence embedding), user tower, shared
  trunk, registered heads and retrieval tasks.

  Args:
    num_videos: video vocabulary size (training videos; row `num_videos` is the OOV row).
    embed_dim: width of item and user vectors.
    hidden: width of the shared trunk.
    use_video_id: add a video-ID embedding to the item vector.
    id_dropout: training rate at which video IDs are dropped to the OOV row.
    position_bias: learn a training-only position logit for the click head.
    max_positions: positions of that bias.
    vocab_pad_multiple: ID tables are padded to a multiple of this many rows.
    retrieval_dim: width of the retrieval tasks' embedding spaces.
    heads: registered head names.
    trunk: the `model.trunk` section: a registered multi-task trunk (models/experts.py:
      shared_bottom, mmoe, ple) from the user-item interaction features to each head's
      hidden vector.
    tasks: registered retrieval task names.
    user_tower: the built user tower.
    frame_encoder: the built frame encoder, or None for an ID-only item tower.
    pooling: a registered temporal pooling name; pooling_args: its own arguments.
    titles: the built title tower, or None when the model reads no titles.
    history_content: widths of the catalog content tables that represent watch-history items
      (beside their video ID) for a history user tower (sasrec, din); see models/sequential.py.
    content_types: the content types (movie, series, news, ...) that get an embedding in the
      item tower (each video's type, any other type an OOV row); empty: none.
    loss_weighting: 'fixed' (train.loss_weights alone) or 'uncertainty': each head and task
      loss also weighed by a learned homoscedastic uncertainty (Kendall et al., CVPR 2018):
      exp(-s) * L + s / 2 for a categorical loss, exp(-s) * L / 2 + s / 2 for squared error,
      s = log sigma^2 a parameter per loss, starting at 0.
    shared_affinity: every head also adds its own learned multiple of one shared user-item
      affinity, the scaled dot product u.i / sqrt(D), before its output nonlinearity (the
      multiples start at zero): one scalar that click, watch time and like all read, as a
      user's liking of a video drives all three; the trunk adds what is particular to a task.
    item_duration: the item tower also reads each video's length (log seconds through a small
      MLP whose output starts at zero): known for a new video as for an old one, and what
      turns the share of a video a user watches into watch time.
    given_click: heads (watch_time, like) that model their label given a click, as ESMM
      (Ma et al., SIGIR 2018) models conversion given a click: trained on the clicked
      impressions only, they predict P(click) times the conditional, the same unconditional
      quantity for metrics, fusion formulas and serving. A clicked view's watch time and like
      say how much the user liked the video, free of position bias and of examination.
    item_features: registered per-video features (models/item_features.py) added to the
      item vectors.
  """

  def __init__(self, *, num_videos: int, embed_dim: int, hidden: int, use_video_id: bool,
               id_dropout: float, position_bias: bool, max_positions: int,
               vocab_pad_multiple: int, retrieval_dim: int, heads: Sequence[str],
               trunk: dict, tasks: Sequence[str], user_tower: UserTower,
               frame_encoder: encoders.FrameEncoder | None, pooling: str, pooling_args: dict,
               titles: text_tower.TitleTower | None, history_content: dict[str, int],
               content_types: tuple[str, ...] = (), loss_weighting: str = "fixed",
               given_click: tuple[str, ...] = (), item_duration: bool = False,
               shared_affinity: bool = False, item_features: tuple[str, ...] = (), dtype,
               param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    d = embed_dim
    self.id_dropout, self.num_videos = id_dropout, num_videos
    self.given_click = tuple(given_click)
    self.user_tower = user_tower
    self.video_embed = (id_table(num_videos, d, vocab_pad_multiple, **kw) if use_video_id
                        else None)
    self.frame_encoder = frame_encoder
    if frame_encoder is not None:
      self.pool = poolings.POOLINGS.get(pooling)(frame_encoder.features, **pooling_args, **kw)
      self.content_proj = layers.MLP((self.pool.out_features, d, d), ("embed", "mlp"), **kw)
    self.titles = titles
    self.trunk = experts.build(trunk, 3 * d, hidden, tuple(heads), **kw)
    self.heads = nnx.Dict({h: HEADS.get(h)(self.trunk.out_features, **kw) for h in heads})
    text_dim = titles.dim if titles is not None else 0
    self.tasks = nnx.Dict({t: TASKS.get(t)(content_dim=d, text_dim=text_dim, dim=retrieval_dim,
                                           **kw) for t in tasks})
    self.position_logit = (param_value(jnp.zeros((max_positions,), jnp.float32), (None,))
                           if position_bias else None)
    self.max_positions = max_positions
    self.history_content = nnx.Dict({k: layers.MLP((w, d, d), ("embed", "mlp"), **kw)
                                     for k, w in sorted(history_content.items())})
    self.type_embed = (id_table(len(content_types), d, 1, **kw) if content_types else None)
    # Starts at zero: the item vectors start where they would without durations.
    self.duration_proj = (layers.MLP((1, d, d), ("embed", "mlp"), zero_last=True, **kw)
                          if item_duration else None)
    # Created last and from constants: the other parameters' initial values do not change.
    self.affinity_scale = (nnx.Dict({h: param_value(jnp.zeros((), jnp.float32), ())
                                     for h in heads}) if shared_affinity else None)
    self.loss_log_vars = (nnx.Dict({n: param_value(jnp.zeros((), jnp.float32), ())
                                    for n in tuple(heads) + tuple(tasks)})
                          if loss_weighting == "uncertainty" else None)
    self.item_features = (nnx.Dict({n: ITEM_FEATURES.get(n)(d, **kw) for n in item_features})
                          if item_features else None)

  def weigh_loss(self, name: str, loss: jax.Array) -> jax.Array:
    """A head's or task's loss as it enters the total (before train.loss_weights)."""
    if self.loss_log_vars is None:
      return loss
    s = self.loss_log_vars[name][...]
    regression = name in self.heads and HEADS.get(name).regression
    return (0.5 if regression else 1.0) * jnp.exp(-s) * loss + 0.5 * s

  def head_loss(self, name: str, out: dict, batch: dict) -> jax.Array:
    """Per-impression loss (B, M) of head `name`: on clicked impressions only for a head in
    `given_click`."""
    loss = self.heads[name].loss(out[name], out, batch)
    if name in self.given_click:
      loss = loss * (batch["click"] > 0).astype(loss.dtype)
    return loss

  def predictions(self, raw: dict) -> dict[str, jax.Array]:
    """Every head's prediction from its raw output; a `given_click` head's times P(click)."""
    pred = {name: head.predict(raw[name]) for name, head in self.heads.items()}
    for name in self.given_click:
      pred[name] = pred[name] * pred["click"]
    return pred

  def history_items(self, ids: jax.Array, catalog: dict) -> jax.Array:
    """Watch-history items (...,) video ids -> (..., D): their video ID embedding (the OOV row
    for an item unseen in training) plus projections of their catalog content."""
    v = (self.video_embed(catalog[sequential.ROW][ids]) if self.video_embed is not None
         else 0.0)
    for name, proj in self.history_content.items():
      v = v + proj(catalog[name][ids].astype(jnp.float32))
    return jnp.asarray(v)

  def title_embedding(self, batch: dict) -> jax.Array:
    """(B, text_dim) unit-norm title embeddings: cached (`title_emb`) or encoded from tokens."""
    return self.titles.embedding(batch)

  def encode_content(self, clip: dict, key: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """The visual content vector (B, D) of clips, before IDs and titles are added; `key` in
    training only (the frame encoder's dropout)."""
    feats, inter = self.frame_encoder(clip, key=key)
    pooled = self.pool(feats, clip["mask"])
    inter["pooled"] = pooled
    return self.content_proj(pooled), inter

  def retrieval_embeddings(self, batch: dict, inter: dict) -> dict[str, dict[str, jax.Array]]:
    """Every task's unit-norm embeddings of a batch of clips (`inter` from `encode_items`)."""
    return {name: task.embeddings(self, batch, inter) for name, task in self.tasks.items()}

  def encode_items(self, clip: dict, video, *, train: bool = False, key=None
                   ) -> tuple[jax.Array, dict]:
    """Item vectors (B, D) from clips (the frame encoder's clip inputs; title inputs when the
    item tower reads titles) and video vocab rows (B,)."""
    inter = {}
    vec = 0.0
    if self.frame_encoder is not None:
      content_key = jax.random.fold_in(key, 1) if train and key is not None else None
      vec, inter = self.encode_content(clip, key=content_key)
      inter["content"] = vec
    if self.titles is not None and self.titles.proj is not None:
      inter["title"] = self.title_embedding(clip)
      vec = vec + self.titles.proj(inter["title"])
    if self.type_embed is not None:
      vec = vec + self.type_embed(clip["content_type"])
    if self.duration_proj is not None:
      seconds = jnp.maximum(clip["duration"].astype(jnp.float32), 0.0)
      vec = vec + self.duration_proj(jnp.log1p(seconds)[..., None])
    for name, feature in (self.item_features or {}).items():
      vec = vec + feature(clip[name])
    if self.video_embed is not None:
      if train and self.id_dropout > 0:
        # Dropping IDs to the OOV row teaches the tower to serve videos it has never seen.
        drop = jax.random.bernoulli(key, self.id_dropout, video.shape)
        video = jnp.where(drop, self.num_videos, video)
      vec = vec + self.video_embed(video)
    vec = constrain(_rms_normalize(jnp.asarray(vec)), ("batch", "embed"))
    inter["item"] = vec
    return vec, inter

  def encode_users(self, inputs: dict, catalog: dict | None = None,
                   candidate: jax.Array | None = None) -> jax.Array:
    """User vectors (..., D) from the user tower's inputs (`user` vocab rows, or a watch
    history with the `catalog` arrays; `candidate` item vectors for a target-attention tower)."""
    items = None if catalog is None else (lambda ids: self.history_items(ids, catalog))
    u = _rms_normalize(self.user_tower(inputs, items, candidate=candidate))
    return constrain(u, ("batch",) + (None,) * (u.ndim - 2) + ("embed",))

  def encode_history_vectors(self, vectors: jax.Array, mask: jax.Array,
                             candidate: jax.Array | None = None) -> jax.Array:
    """User vectors (..., D) of a history tower from its history items' vectors (..., L, D:
    `history_items`) and mask (..., L) (and the `candidate` item vectors of a target-attention
    tower), as `encode_users` computes them from video ids."""
    return _rms_normalize(from_vectors(self.user_tower, vectors, mask, candidate))

  def retrieval_vectors(self, u: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Stage-1 (candidate retrieval) vectors of users (..., D) and items (..., D): their dot
    product orders the whole catalog before the heads rank the top candidates: the `user_item`
    task's embeddings when it is trained, else the towers' vectors themselves."""
    return self.retrieval_user(u), self.retrieval_item(i)

  def retrieval_user(self, u: jax.Array) -> jax.Array:
    """The user side of `retrieval_vectors`."""
    return self.tasks["user_item"].user_embedding(u) if "user_item" in self.tasks else u

  def retrieval_item(self, i: jax.Array) -> jax.Array:
    """The item side of `retrieval_vectors`."""
    return self.tasks["user_item"].item_embedding(i) if "user_item" in self.tasks else i

  def score(self, u: jax.Array, i: jax.Array) -> dict[str, jax.Array]:
    """Raw head outputs for paired user and item vectors (B, D) each."""
    h, _ = self.trunk(jnp.concatenate([u, i, u * i], axis=-1))
    scale = self.affinity_scale
    a = (None if scale is None
         else jnp.sum(u * i, axis=-1).astype(jnp.float32) / jnp.sqrt(float(u.shape[-1])))
    return {name: head(h[name], 0.0 if scale is None else scale[name][...] * a)
            for name, head in self.heads.items()}

  def gates(self, u: jax.Array, i: jax.Array) -> dict[str, jax.Array]:
    """Each head's expert gate weights for paired user and item vectors (mmoe, ple)."""
    return self.trunk(jnp.concatenate([u, i, u * i], axis=-1))[1]

  def __call__(self, batch: dict, *, train: bool = False, key=None,
               catalog: dict | None = None) -> tuple[dict, dict]:
    """Head outputs (B, M) for B clips, each with M impressions (batch["user"] is (B, M))."""
    i, inter = self.encode_items(batch, batch["video"], train=train, key=key)
    items = jnp.broadcast_to(i[:, None, :], batch["user"].shape + i.shape[-1:])
    u = self.encode_users(batch, catalog, candidate=items)
    out = self.score(u, items)
    if train and self.position_logit is not None:
      pos = jnp.clip(batch["position"], 0, self.max_positions - 1)
      out["position_logit"] = self.position_logit[...][pos]
    inter["user"] = u
    return out, inter

  @classmethod
  def from_config(cls, cfg, num_users: int, num_videos: int, rngs: nnx.Rngs
                  ) -> "TwoTowerRecommender":
    """The model of the `model` config section, assembled from the registered parts."""
    return cls(**two_tower_config.arguments(cfg, num_users, num_videos, rngs))

  @classmethod
  def validate(cls, m, source) -> None:
    """Raises ConfigError on a bad `model` section `m` for this model on dataset `source`."""
    two_tower_config.validate(m, source)

  @classmethod
  def needs(cls, m, source) -> Needs:
    """What it needs of the other sections (config_checks.Needs)."""
    return two_tower_config.needs(m, source)

  @classmethod
  def input_spec(cls, cfg) -> InputSpec:
    """What the input pipeline must deliver for this model."""
    return two_tower_config.input_spec(cfg)

  @classmethod
  def record_terms(cls, config) -> PartTerms:
    """Signature defaults and inert fields of the config of record (vidrec_jax/config_io.py)."""
    return two_tower_config.record_terms(config, cls)
