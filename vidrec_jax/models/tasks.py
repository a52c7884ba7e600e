"""Retrieval tasks on the shared content tower. A task owns its whole contract: its parameters
(projections, a learnable temperature), its embeddings for evaluation, its training pairs and
their masking, what it needs from the input pipeline (titles, a second view of each clip), and
its evaluation over the catalog. Nothing else names a task:

  @TASKS.register("my_task")
  class MyTask(RetrievalTask):
    ...

`model.tasks` in the config lists the active ones; `train.loss_weights` weighs their losses.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidrec_jax import metrics as M
from vidrec_jax.models import layers
from vidrec_jax.models.retrieval import MAX_LOGIT_SCALE
from vidrec_jax.models.retrieval import contrastive_loss
from vidrec_jax.models.text.bert import l2_normalize
from vidrec_jax.registry import Registry


def logit_scale() -> nnx.Param:
  """A learnable softmax temperature, stored as log(1 / 0.07) (CLIP's initial value)."""
  return nnx.Param(jnp.asarray(np.log(1 / 0.07), jnp.float32))


@dataclasses.dataclass
class CatalogView:
  """What a task's evaluation sees of the whole catalog, row = video id.

  Attributes:
    emb: this task's embeddings of every video (centre frames of each TSN segment).
    decodable: videos whose clip could be read (the others are never queries nor targets).
    cold: cold-start videos.
    query_view: computes this task's embeddings of every video from a second view (random
      frames of each segment, seeded per video) and which of those clips were readable.
  """

  emb: dict[str, np.ndarray]
  decodable: np.ndarray
  cold: np.ndarray
  query_view: Callable[[], tuple[dict[str, np.ndarray], np.ndarray]]


def ranking_metrics(ranks: np.ndarray, prefix: str) -> dict[str, float]:
  out = {f"{prefix}/{k}": v for k, v in M.retrieval_metrics(ranks).items()}
  out[f"{prefix}/count"] = float(len(ranks))
  return out


class RetrievalTask(nnx.Module):
  """Base of retrieval tasks: an in-batch contrastive loss over (query, target) pairs."""

  needs_titles: ClassVar[bool] = False  # the pipeline delivers title inputs
  needs_query_view: ClassVar[bool] = False  # ... and a second clip of each video (query_*)
  needs_log_q: ClassVar[bool] = False  # ... and each training clip's log sampling probability
  needs_labels: ClassVar[tuple[str, ...]] = ()  # impression label columns the loss reads

  def __init__(self, *, content_dim: int, text_dim: int, dim: int, dtype, param_dtype,
               rngs: nnx.Rngs):
    del content_dim, text_dim, dim, dtype, param_dtype, rngs

  def embeddings(self, model, batch: dict, inter: dict) -> dict[str, jax.Array]:
    """Unit-norm embeddings of a batch of clips for evaluation, keyed by side."""
    raise TypeError("a retrieval task defines its embeddings")

  def pairs(self, model, batch: dict, inter: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(queries, targets, log scale): row i of queries belongs with row i of targets."""
    raise TypeError("a retrieval task defines its pairs")

  def mask(self, batch: dict) -> tuple[jax.Array, jax.Array]:
    """(valid rows, group id): rows of one group are one item, never each other's negatives."""
    return batch["valid"], batch["video"]

  def loss(self, model, batch: dict, inter: dict) -> jax.Array:
    queries, targets, log_scale = self.pairs(model, batch, inter)
    valid, group = self.mask(batch)
    return contrastive_loss(queries, targets, log_scale, valid, group)

  @staticmethod
  def evaluate(view: CatalogView) -> dict[str, float]:
    """Metrics keyed below the task name (e.g. `cold/recall@10`)."""
    del view
    return {}


TASKS: Registry[type[RetrievalTask]] = Registry("retrieval task", package="vidrec_jax.models")


@TASKS.register("text_match")
class TextMatch(RetrievalTask):
  """Title <-> visual content: the title embedding and the content vector projected into one
  space. Another video with the same title is masked, not a negative."""

  needs_titles = True

  def __init__(self, *, content_dim, text_dim, dim, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.text_proj = layers.dense(text_dim, dim, ("embed", "mlp"), **kw)
    self.video_proj = layers.dense(content_dim, dim, ("embed", "mlp"), **kw)
    self.scale = logit_scale()

  def embeddings(self, model, batch, inter):
    title = inter["title"] if "title" in inter else model.title_embedding(batch)
    return {"text": l2_normalize(self.text_proj(title)),
            "video": l2_normalize(self.video_proj(inter["content"]))}

  def pairs(self, model, batch, inter):
    e = self.embeddings(model, batch, inter)
    return e["text"], e["video"], self.scale[...]

  def mask(self, batch):
    return batch["valid"], batch["title_group"]

  @staticmethod
  def evaluate(view):
    """Each cold-start video's title retrieves among the cold-start videos."""
    cold = np.flatnonzero(view.cold & view.decodable)
    ranks = M.retrieval_ranks(view.emb["text"][cold], view.emb["video"][cold],
                              np.arange(len(cold)))
    return ranking_metrics(ranks, "cold")


@TASKS.register("visual_query")
class VisualQuery(RetrievalTask):
  """Two independently sampled clips of a video: the query view finds its video."""

  needs_query_view = True

  def __init__(self, *, content_dim, text_dim, dim, dtype, param_dtype, rngs):
    self.proj = layers.dense(content_dim, dim, ("embed", "mlp"), dtype=dtype,
                             param_dtype=param_dtype, rngs=rngs)
    self.scale = logit_scale()

  def embeddings(self, model, batch, inter):
    return {"visual": l2_normalize(self.proj(inter["content"]))}

  def pairs(self, model, batch, inter):
    view = {k[len("query_"):]: v for k, v in batch.items() if k.startswith("query_")}
    query, _ = model.encode_content(view)
    return (l2_normalize(self.proj(query)), self.embeddings(model, batch, inter)["visual"],
            self.scale[...])

  def mask(self, batch):
    return batch["valid"] * batch["query_valid"], batch["video"]

  @staticmethod
  def evaluate(view):
    """A random-frame view of every video retrieves among the whole catalog (ties count
    against the target); reported for all and for cold-start query videos."""
    query, query_ok = view.query_view()
    rows = np.flatnonzero(view.decodable & query_ok)
    gallery = np.where(view.decodable[:, None], view.emb["visual"], 0.0)  # never found
    ranks = M.retrieval_ranks(query["visual"][rows], gallery, rows)
    out = ranking_metrics(ranks, "all")
    out.update(ranking_metrics(ranks[view.cold[rows]], "cold"))
    return out


def user_item_logits(users: jax.Array, items: jax.Array, log_scale: jax.Array,
                     log_q: jax.Array) -> jax.Array:
  """(B*M, B) logits of every impression's user against every clip of the batch: scaled
  cosine similarities minus each clip's log sampling probability (the logQ correction: a
  popular video is a negative of many rows because it is sampled often, not because users
  dislike it; Yi et al., RecSys 2019)."""
  scale = jnp.exp(jnp.minimum(log_scale.astype(jnp.float32), jnp.log(MAX_LOGIT_SCALE)))
  q = users.reshape((-1, users.shape[-1])).astype(jnp.float32)
  return scale * jnp.einsum("qe,te->qt", q, items.astype(jnp.float32)) - log_q[None, :]


def user_item_keep(video: jax.Array, user: jax.Array, positive: jax.Array, valid: jax.Array
                   ) -> jax.Array:
  """(B*M, B) which clips are the positive or a true negative of each impression's row.

  An accidental hit is masked: a clip of the same video as the row's own clip, or a clip that
  the row's user clicked in another impression of the batch (a positive of that user, not a
  negative). Clips that could not be decoded are never negatives.

  Args:
    video: (B,) video vocab row of each clip.
    user: (B, M) user vocab row of each impression.
    positive: (B, M) 1 for an impression that is a training positive (clicked, real).
    valid: (B,) 1 for a clip that could be read.
  """
  b, m = user.shape
  own = jnp.repeat(jnp.arange(b), m)  # the clip of each impression row
  is_own = own[:, None] == jnp.arange(b)[None, :]
  same_video = video[own][:, None] == video[None, :]
  clicked_there = ((user.reshape(-1)[:, None, None] == user[None, :, :])
                   & (positive[None, :, :] > 0)).any(-1)
  return is_own | (~same_video & ~clicked_there & (valid[None, :] > 0))


@TASKS.register("user_item")
class UserItem(RetrievalTask):
  """Two-tower candidate retrieval: users and videos projected into one space, trained with an
  in-batch softmax over the batch's clips for every clicked impression, with logQ correction
  and accidental-hit masking. The first stage of retrieval then ranking: its user and item
  embeddings order the whole catalog (`TwoTowerRecommender.retrieval_vectors`), and the heads
  rank the top candidates. Its evaluation over users' held-out clicks is the `two_stage`
  evaluator's (eval/evaluators/two_stage.py)."""

  needs_log_q = True
  needs_labels = ("click",)

  def __init__(self, *, content_dim, text_dim, dim, dtype, param_dtype, rngs):
    del text_dim
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.user_proj = layers.dense(content_dim, dim, ("embed", "mlp"), **kw)
    self.item_proj = layers.dense(content_dim, dim, ("embed", "mlp"), **kw)
    self.scale = logit_scale()

  def user_embedding(self, u: jax.Array) -> jax.Array:
    return l2_normalize(self.user_proj(u))

  def item_embedding(self, i: jax.Array) -> jax.Array:
    return l2_normalize(self.item_proj(i))

  def embeddings(self, model, batch, inter):
    return {"item": self.item_embedding(inter["item"])}

  def loss(self, model, batch, inter):
    positive = (batch["click"] * batch["weight"]
                * batch["valid"].astype(jnp.float32)[:, None])
    logits = user_item_logits(self.user_embedding(inter["user"]),
                              self.item_embedding(inter["item"]), self.scale[...],
                              batch["log_q"].astype(jnp.float32))
    keep = user_item_keep(batch["video"], batch["user"], positive, batch["valid"])
    logits = jnp.where(keep, logits, -1e9)
    b, m = batch["user"].shape
    own = jnp.repeat(jnp.arange(b), m)
    ce = jax.nn.logsumexp(logits, axis=-1) - logits[jnp.arange(b * m), own]
    w = positive.reshape(-1)
    return jnp.sum(w * ce) / jnp.maximum(w.sum(), 1.0)
