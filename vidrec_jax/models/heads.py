"""Task heads on the shared trunk. A head owns its contract: the label columns it reads, its loss,
its prediction, and the metrics evaluation reports for it; the input pipeline and the ranking
evaluator read these from the active heads, so adding a task is registering one head:

  @HEADS.register("my_task")
  class MyHead(Head):
    labels = ("my_label",)
    ...
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vidrec_jax import metrics as M
from vidrec_jax.models import layers
from vidrec_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class GroupData:
  """The evaluated impressions of one (split, group): what a head's metrics see.

  Attributes:
    labels: label column -> values (every column the dataset has).
    pred: this head's predictions, aligned with the labels.
    users: the user id of each impression (per-user metrics).
    oracle: the true click probability of each impression, when the dataset has an oracle.
    ndcg_k: the cut-off of NDCG metrics.
  """

  labels: dict[str, np.ndarray]
  pred: np.ndarray
  users: np.ndarray
  oracle: np.ndarray | None
  ndcg_k: int


class Head(nnx.Module):
  """One output per impression from the trunk's hidden vector, and its contract."""

  labels: ClassVar[tuple[str, ...]] = ()  # label columns the loss and metrics read
  # A Gaussian likelihood (squared error) rather than a categorical one: learned uncertainty
  # weighting scales its loss by 1 / (2 sigma^2) instead of 1 / sigma^2 (Kendall et al., 2018).
  regression: ClassVar[bool] = False
  # Heads of one group estimate the same quantity (e.g. "watch_time": squared error, log
  # seconds, weighted logistic regression); a model takes at most one head of each group.
  exclusive_group: ClassVar[str | None] = None
  # The head may be trained on clicked impressions only and predicted as P(click) times its
  # conditional prediction (model.given_click, ESMM-style).
  given_click_ok: ClassVar[bool] = False

  def __init__(self, hidden: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.out = layers.dense(hidden, 1, ("mlp", None), dtype=dtype, param_dtype=param_dtype,
                            rngs=rngs)

  def __call__(self, h: jax.Array, offset: jax.Array | float = 0.0) -> jax.Array:
    """The raw output from hidden vectors `h`; `offset` is added before the head's output
    nonlinearity (the shared user-item affinity term of model.shared_affinity)."""
    return self.out(h)[..., 0].astype(jnp.float32) + offset

  @staticmethod
  def loss(raw: jax.Array, outputs: dict, batch: dict) -> jax.Array:
    """Per-impression loss (B, M) of this head's raw output; `outputs` holds every head's raw
    output and the training-only terms (e.g. `position_logit`)."""
    raise TypeError("a head defines its loss")

  @staticmethod
  def predict(raw: jax.Array) -> jax.Array:
    return raw

  @staticmethod
  def metrics(g: GroupData) -> dict[str, float]:
    """Metrics of one (split, group), keyed by metric name (e.g. `auc`)."""
    del g
    return {}

  @staticmethod
  def split_metrics(g: GroupData) -> dict[str, float]:
    """Metrics over a whole split, keyed below the split (e.g. `watch_time/mae`)."""
    del g
    return {}

  @staticmethod
  def table_columns(ndcg_k: int) -> tuple[str, ...]:
    """The metrics the printed table shows for this head."""
    del ndcg_k
    return ()


HEADS: Registry[type[Head]] = Registry("head", package="vidrec_jax.models")


class BinaryHead(Head):
  """A logit of a binary label: sigmoid cross-entropy, probabilities as predictions."""

  @classmethod
  def loss(cls, raw, outputs, batch):
    del outputs
    return optax.sigmoid_binary_cross_entropy(raw, batch[cls.labels[0]])

  @staticmethod
  def predict(raw):
    return jax.nn.sigmoid(raw)


@HEADS.register("click")
class ClickHead(BinaryHead):
  """Click logit. A learned position bias explains away position in training only
  (`position_logit`), so scores are position-free at evaluation."""

  labels = ("click",)

  @classmethod
  def loss(cls, raw, outputs, batch):
    return super().loss(raw + outputs.get("position_logit", 0.0), outputs, batch)

  @staticmethod
  def metrics(g):
    y, p, k = g.labels["click"], g.pred, g.ndcg_k
    r = {"click_rate": float(np.mean(y)), "auc": M.auc(y, p), "gauc": M.group_auc(g.users, y, p),
         "logloss": M.logloss(y, p), f"ndcg@{k}": M.ndcg_at_k(g.users, y, p, k)}
    if g.oracle is not None:
      r["oracle_auc"] = M.auc(y, g.oracle)
      r["oracle_gain"] = M.oracle_gain(r["auc"], r["oracle_auc"])
      r[f"oracle_ndcg@{k}"] = M.ndcg_at_k(g.users, y, g.oracle, k)
    return r

  @staticmethod
  def table_columns(ndcg_k):
    return ("auc", "oracle_auc", "oracle_gain", "gauc", "logloss", f"ndcg@{ndcg_k}")


@HEADS.register("watch_time")
class WatchTimeHead(Head):
  """Watch time in seconds (0 when not clicked); squared error."""

  labels = ("watch_time",)
  regression = True
  exclusive_group = "watch_time"
  given_click_ok = True

  def __call__(self, h, offset=0.0):
    return jax.nn.softplus(super().__call__(h, offset))

  @staticmethod
  def loss(raw, outputs, batch):
    del outputs
    return jnp.square(raw - batch["watch_time"])

  @staticmethod
  def metrics(g):
    y = g.labels["watch_time"]
    return {"watch_time_mse": M.mse(y, g.pred), "watch_time_mae": M.mae(y, g.pred)}

  @staticmethod
  def split_metrics(g):
    y = g.labels["watch_time"]
    return {"watch_time/mse": M.mse(y, g.pred), "watch_time/mae": M.mae(y, g.pred)}

  @staticmethod
  def table_columns(ndcg_k):
    del ndcg_k
    return ("watch_time_mae",)


@HEADS.register("watch_time_log")
class WatchTimeLogHead(WatchTimeHead):
  """Watch time in seconds, fitted by squared error on the log scale, log(1 + seconds): the
  share of a video a user watches multiplies its length, so on the log scale the video's length
  and the user's liking add up (what an additive trunk models well), and a long video's
  seconds no longer outweigh a short one's. Predictions are back in seconds, the exponential
  of the fitted log (about the median, not the mean, of a view's watch time: what MAE
  rewards); MSE and MAE are reported in seconds as the squared-error head's."""

  @staticmethod
  def loss(raw, outputs, batch):
    del outputs
    return jnp.square(raw - jnp.log1p(jnp.maximum(batch["watch_time"], 0.0)))

  @staticmethod
  def predict(raw):
    return jnp.expm1(raw)


@HEADS.register("watch_time_logistic")
class WatchTimeLogisticHead(Head):
  """Watch time by YouTube's weighted logistic regression (Covington et al., RecSys 2016): a
  logit trained with sigmoid cross-entropy where a clicked impression is a positive weighted by
  its watch time and an unclicked one a negative of weight 1, so the learned odds exp(logit)
  approximate the expected watch time of the impression; predictions are those odds, in
  seconds (MSE and MAE against the logged watch time, as the squared-error head's)."""

  labels = ("click", "watch_time")
  exclusive_group = "watch_time"  # already conditioned on the click: never given_click
  MAX_LOGIT = 12.0  # odds up to e^12 s: no overflow from an early, wild logit

  def __call__(self, h, offset=0.0):
    return jnp.minimum(super().__call__(h, offset), self.MAX_LOGIT)

  @staticmethod
  def loss(raw, outputs, batch):
    del outputs
    clicked = batch["click"] > 0
    weight = jnp.where(clicked, batch["watch_time"], 1.0)
    return weight * optax.sigmoid_binary_cross_entropy(raw, clicked.astype(jnp.float32))

  @staticmethod
  def predict(raw):
    return jnp.exp(raw)

  metrics = staticmethod(WatchTimeHead.metrics)
  split_metrics = staticmethod(WatchTimeHead.split_metrics)
  table_columns = staticmethod(WatchTimeHead.table_columns)


@HEADS.register("like")
class LikeHead(BinaryHead):
  """Like logit."""

  labels = ("like",)
  given_click_ok = True

  @staticmethod
  def metrics(g):
    return {"like_auc": M.auc(g.labels["like"], g.pred)}

  @staticmethod
  def table_columns(ndcg_k):
    del ndcg_k
    return ("like_auc",)
