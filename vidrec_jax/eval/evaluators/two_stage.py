"""`two_stage`: retrieval then ranking, judged on each user's clicks in a split.

Stage 1 orders the whole catalog for every user by the dot product of retrieval vectors (the
`user_item` task's embeddings when the model trains it, else the towers' vectors:
`TwoTowerRecommender.retrieval_vectors`) and keeps the top `candidates`; stage 2 orders those by
the click head's prediction. Reported per split, over users with at least one click in it:

  {split}/retrieval/recall@{k}   share of the user's clicked videos among the top k retrieved
  {split}/retrieval/cold_recall@{k}  the same over clicked cold-start videos only
  {split}/two_stage/ndcg@{n}     NDCG@n of the ranked candidates (clicked = relevant)
  {split}/full_rank/ndcg@{n}     NDCG@n of the click head ranking the whole catalog
  {split}/two_stage/ndcg_ratio   two_stage / full_rank: what the retrieval stage loses (1 = none)
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from vidrec_jax import metrics as metrics_lib
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.eval.evaluators import Evaluator
from vidrec_jax.models.partitioning import activation_sharding
from vidrec_jax.train import steps

USER_CHUNK = 256  # users per stage-1 call
PAIRS_PER_CHUNK = 1 << 22  # (user, video) pairs the whole-catalog reference scores at a time


@EVALUATORS.register("two_stage")
class TwoStageEvaluator(Evaluator):
  """Recall of the retrieval stage and NDCG of retrieval then ranking against ranking all.

  Args:
    splits: the splits of the final evaluation (periodic evaluation asks for 'valid').
    k: recall cut-off of the retrieval stage.
    candidates: videos the retrieval stage passes to the ranker.
    ndcg_k: NDCG cut-off of the final lists.
  """

  # Stage 1 ranks the catalog by one retrieval vector per user (Encodings.user_vectors).
  history_users = False

  def __init__(self, ctx, *, splits: tuple[str, ...], k: int, candidates: int, ndcg_k: int):
    super().__init__(ctx)
    self.splits, self.k, self.candidates, self.ndcg_k = tuple(splits), k, candidates, ndcg_k
    s = ctx.setup
    self._topk = jax.jit(functools.partial(steps.retrieval_topk_step, s),
                         in_shardings=(s.param_shardings, None, None), static_argnums=(3,))

  @classmethod
  def check(cls, field, source, *, splits, k, candidates, ndcg_k):
    check(len(splits) > 0 and set(splits) <= set(source.splits), f"{field}.splits",
          tuple(splits), f"a non-empty subset of the dataset's splits: {', '.join(source.splits)}")
    check("click" in source.label_columns, f"{field}.type", "two_stage",
          "needs a dataset with click labels")
    for name, v in (("k", k), ("candidates", candidates), ("ndcg_k", ndcg_k)):
      positive_int(v, f"{field}.{name}")
    check(ndcg_k <= candidates, f"{field}.ndcg_k", ndcg_k,
          f"must be <= candidates={candidates}")

  def retrieve(self, enc, user_rows: np.ndarray, k: int) -> np.ndarray:
    """(U, k) catalog rows of the top k videos of each user vocab row by retrieval score;
    undecodable videos are never retrieved."""
    rows = np.flatnonzero(enc.decodable)  # the catalog rows that can be retrieved
    items = enc.item_vectors[rows].astype(np.float32)
    s = self.ctx.setup
    out = []
    for a in range(0, len(user_rows), USER_CHUNK):
      u = enc.user_vectors[user_rows[a:a + USER_CHUNK]]
      with activation_sharding(s.mesh, s.rules):
        _, idx = self._topk(enc.params, u, items, min(k, len(items)))
      out.append(rows[np.asarray(jax.device_get(idx))])
    return np.concatenate(out) if out else np.zeros((0, k), np.int64)

  def evaluate(self, enc, splits):
    ctx = self.ctx
    catalog = ctx.dataset.catalog
    n_videos = len(catalog)
    out: dict[str, float] = {}
    for split in splits or self.splits:
      cols = ctx.dataset.split(split).columns
      clicked = cols["click"] > 0
      users = np.unique(cols["user_id"][clicked])
      relevant = [set() for _ in users]
      pos = np.searchsorted(users, cols["user_id"][clicked])
      for p, v in zip(pos, cols["video_id"][clicked]):
        relevant[p].add(int(v))
      rows = ctx.user_vocab(users)
      cand = self.retrieve(enc, rows, max(self.k, self.candidates))
      cold_rel = [{v for v in r if catalog.cold[v]} for r in relevant]
      recall = metrics_lib.recall_of_lists(cand, relevant, self.k)
      cold_recall = metrics_lib.recall_of_lists(cand, cold_rel, self.k)
      n = self.ndcg_k
      ts, fr = np.zeros(len(users)), np.zeros(len(users))
      # Stage 2 on the candidates; the click head on the whole catalog for the reference, a
      # block of users at a time: the users × videos scores never exist whole (at 20,000
      # videos and 60,000 users they would be 9.6 GB of ids alone).
      step = max(1, PAIRS_PER_CHUNK // max(n_videos, 1))
      for a in range(0, len(users), step):
        block = users[a:a + step]
        every = np.repeat(block, n_videos)
        scores = enc.predict({"user_id": every, "video_id": np.tile(np.arange(n_videos),
                                                                      len(block)),
                              "timestamp": np.zeros(len(every), np.int64)})["click"]
        scores = scores.reshape(len(block), n_videos)
        scores = np.where(enc.decodable[None, :], scores, -np.inf)
        c = cand[a:a + step, :self.candidates]
        order = np.argsort(-np.take_along_axis(scores, c, axis=1), axis=1, kind="stable")
        two_stage = np.take_along_axis(c, order, axis=1)
        full = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        ts[a:a + step] = metrics_lib.ndcg_of_lists(two_stage, relevant[a:a + step], n)
        fr[a:a + step] = metrics_lib.ndcg_of_lists(full, relevant[a:a + step], n)
      p = f"{split}/"
      out.update({
          f"{p}retrieval/users": float(len(users)),
          f"{p}retrieval/recall@{self.k}": float(np.nanmean(recall)),
          f"{p}retrieval/cold_recall@{self.k}": (float(np.nanmean(cold_recall))
                                                 if np.any(~np.isnan(cold_recall))
                                                 else float("nan")),
          f"{p}two_stage/ndcg@{n}": float(np.nanmean(ts)),
          f"{p}full_rank/ndcg@{n}": float(np.nanmean(fr)),
          f"{p}two_stage/ndcg_ratio": (float(np.nanmean(ts) / np.nanmean(fr))
                                        if np.nanmean(fr) > 0 else float("nan"))})
    return out

  def table(self, metrics):
    rows = [s for s in self.splits if f"{s}/retrieval/users" in metrics]
    if not rows:
      return []
    cols = (("users", "retrieval/users"), (f"recall@{self.k}", f"retrieval/recall@{self.k}"),
            (f"cold_rec@{self.k}", f"retrieval/cold_recall@{self.k}"),
            (f"2stage_ndcg@{self.ndcg_k}", f"two_stage/ndcg@{self.ndcg_k}"),
            (f"full_ndcg@{self.ndcg_k}", f"full_rank/ndcg@{self.ndcg_k}"))
    lines = ["two-stage".ljust(18) + "".join(h.rjust(15) for h, _ in cols)]
    for r in rows:
      lines.append(r.ljust(18) + "".join(f"{metrics.get(f'{r}/{k}', float('nan')):15.4f}"
                                         for _, k in cols))
    return lines
