"""`two_stage`: retrieval then ranking, judged on each user's clicks in a split.

Stage 1 orders the whole catalog for every user by the dot product of retrieval vectors (the
`user_item` task's embeddings when the model trains it, else the towers' vectors:
`TwoTowerRecommender.retrieval_vectors`) and keeps the top `candidates`; stage 2 orders those by
the click head's prediction. Reported per split, over users with at least one click in it:

  {split}/retrieval/recall@{k}   share of the user's clicked videos among the top k retrieved
  {split}/retrieval/cold_recall@{k}  the same over clicked cold-start videos only
  {split}/two_stage/ndcg@{n}     NDCG@n of the ranked candidates (clicked = relevant)
  {split}/full_rank/ndcg@{n}     NDCG@n of the click head ranking the whole catalog, over the
                                 reference users (`full_rank/users` of them)
  {split}/two_stage/ndcg_ratio   two_stage / full_rank over the reference users: what the
                                 retrieval stage loses (1 = none)

The ranker scores each user's candidates only; the reference scores every video for each
reference user, users × catalog predictions, so it runs on at most `reference_users` users
drawn with a fixed seed (all of them when there are no more; 0: always all). At 20,000 videos
the click head scored about 21 users' catalogs a second here: every user of a MicroLens-100K-
sized split would take about an hour a split.
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
REFERENCE_USERS = 5000  # users whose whole catalog the reference ranks, per split


@EVALUATORS.register("two_stage")
class TwoStageEvaluator(Evaluator):
  """Recall of the retrieval stage and NDCG of retrieval then ranking against ranking all.

  Args:
    splits: the splits of the final evaluation (periodic evaluation asks for 'valid').
    k: recall cut-off of the retrieval stage.
    candidates: videos the retrieval stage passes to the ranker.
    ndcg_k: NDCG cut-off of the final lists.
    reference_users: users whose whole catalog the reference ranks (a seeded sample when a
      split has more; 0: every user).
  """

  # Stage 1 ranks the catalog by one retrieval vector per user (Encodings.user_vectors).
  history_users = False

  def __init__(self, ctx, *, splits: tuple[str, ...], k: int, candidates: int, ndcg_k: int,
               reference_users: int = REFERENCE_USERS):
    super().__init__(ctx)
    self.splits, self.k, self.candidates, self.ndcg_k = tuple(splits), k, candidates, ndcg_k
    self.reference_users = reference_users
    s = ctx.setup
    self._topk = jax.jit(functools.partial(steps.retrieval_topk_step, s),
                         in_shardings=(s.param_shardings, None, None), static_argnums=(3,))

  @classmethod
  def check(cls, field, source, *, splits, k, candidates, ndcg_k,
            reference_users=REFERENCE_USERS):
    check(isinstance(reference_users, int) and reference_users >= 0,
          f"{field}.reference_users", reference_users, "must be an integer >= 0 (0: every user)")
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
      c = cand[:, :self.candidates]
      # Stage 2: the click head on each user's candidates.
      scores = self._scores(enc, np.repeat(users, c.shape[1]), c.reshape(-1)).reshape(c.shape)
      order = np.argsort(-scores, axis=1, kind="stable")
      ts = metrics_lib.ndcg_of_lists(np.take_along_axis(c, order, axis=1), relevant, n)
      # The reference: the click head on the whole catalog, a block of users at a time (the
      # users × videos scores never exist whole).
      ref = self._reference_rows(len(users), split)
      fr = np.zeros(len(ref))
      step = max(1, PAIRS_PER_CHUNK // max(n_videos, 1))
      for a in range(0, len(ref), step):
        block = ref[a:a + step]
        full = self._scores(enc, np.repeat(users[block], n_videos),
                            np.tile(np.arange(n_videos), len(block))).reshape(len(block), -1)
        full = np.argsort(-full, axis=1, kind="stable")[:, :n]
        fr[a:a + step] = metrics_lib.ndcg_of_lists(full, [relevant[i] for i in block], n)
      p = f"{split}/"
      out.update({
          f"{p}retrieval/users": float(len(users)),
          f"{p}retrieval/recall@{self.k}": float(np.nanmean(recall)),
          f"{p}retrieval/cold_recall@{self.k}": (float(np.nanmean(cold_recall))
                                                 if np.any(~np.isnan(cold_recall))
                                                 else float("nan")),
          f"{p}two_stage/ndcg@{n}": float(np.nanmean(ts)),
          f"{p}full_rank/users": float(len(ref)),
          f"{p}full_rank/ndcg@{n}": float(np.nanmean(fr)),
          f"{p}two_stage/ndcg_ratio": (float(np.nanmean(ts[ref]) / np.nanmean(fr))
                                        if np.nanmean(fr) > 0 else float("nan"))})
    return out

  @staticmethod
  def _scores(enc, users: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """The click head's scores of (user id, catalog row) pairs; -inf for an undecodable
    video."""
    s = enc.predict({"user_id": users, "video_id": videos,
                     "timestamp": np.zeros(len(users), np.int64)})["click"]
    return np.where(enc.decodable[videos], s, -np.inf)

  def _reference_rows(self, n: int, split: str) -> np.ndarray:
    """Indices of the users the reference ranks the catalog for: all `n`, or a sorted sample
    of `reference_users` drawn with a seed fixed per split (the same users every evaluation)."""
    if not self.reference_users or n <= self.reference_users:
      return np.arange(n)
    rng = np.random.default_rng([self.ctx.run.seed, sum(map(ord, split))])
    return np.sort(rng.choice(n, self.reference_users, replace=False))

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
