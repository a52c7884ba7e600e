"""`full_sort`: next-item evaluation over the whole catalog, on device. Every record of a split is
a query (the user's history before it, the record's item as the target); the target's rank
among all items gives HR@k, NDCG@k and MRR@k, also for targets that are cold-start items
(`cold`: published after the training period) and for targets that are new items (`new`: no
interaction in the training split, so an ID-only model has only its out-of-vocabulary row for
them; under leave-one-out an item can be new without being cold), in one evaluation under two
protocols:

  unmasked  history items stay candidates, as RecBole's full sort for sequential models
            (`test/hr@10`, `test/cold/ndcg@10`, ...)
  masked    the items of the history the model reads (other than the target) are removed from
            the candidates first, as MicroLens' protocol (`test/masked/hr@10`,
            `test/masked/cold/ndcg@10`, ...)

Ties count against the target in both."""

from __future__ import annotations

import functools
import time

import jax
import numpy as np
from absl import logging

from vidrec_jax import metrics as metrics_lib
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.data import sequences
from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.eval.evaluators import Evaluator
from vidrec_jax.eval.evaluators import table
from vidrec_jax.models.partitioning import activation_sharding
from vidrec_jax.train import catalog as catalog_lib
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps


def rank_metrics(ranks: np.ndarray, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
  """`{prefix}/count` and, per cut-off k, `hr@k` (vidrec_jax/metrics.py `hit_rate`: the
  quantity the retrieval tasks report as `recall@k`), `ndcg@k` and `mrr@k` of 1-based ranks."""
  out = {f"{prefix}/count": float(len(ranks))}
  for k in ks:
    out[f"{prefix}/hr@{k}"] = metrics_lib.hit_rate(ranks, k)
    out[f"{prefix}/ndcg@{k}"] = metrics_lib.ndcg_of_ranks(ranks, k)
    out[f"{prefix}/mrr@{k}"] = metrics_lib.mrr(ranks, k)
  return out


@EVALUATORS.register("full_sort")
class FullSortEvaluator(Evaluator):
  """Ranks every split record's target among all items.

  Args:
    splits: the splits of the final evaluation (periodic evaluation asks for 'valid').
    ks: cut-offs of HR, NDCG and MRR.
    periodic_queries: the periodic evaluations during training (early stopping, the best
      checkpoint) rank a fixed random sample of this many queries of the split (the same
      sample every time); 0 ranks every query. The final evaluation always ranks every query.
      Full sort's work is queries x catalog, which grows as the square of the catalog when
      users grow with it: at MicroLens-100K size a periodic evaluation of every valid query
      costs minutes on a CPU.
  """

  models = ("sequential",)

  def __init__(self, ctx, *, splits: tuple[str, ...], ks: tuple[int, ...],
               periodic_queries: int = 0):
    super().__init__(ctx)
    self.splits, self.ks = tuple(splits), tuple(ks)
    self.periodic_queries = periodic_queries
    s = ctx.setup
    self.catalog = mesh_lib.replicate(catalog_lib.catalog_arrays(ctx), s.mesh)
    self._ranks = jax.jit(functools.partial(steps.full_sort_ranks, s),
                          in_shardings=(s.param_shardings, None, None))
    self._queries = {}

  @classmethod
  def check(cls, field, source, *, splits, ks, periodic_queries=0):
    check(len(splits) > 0 and set(splits) <= set(source.splits) - {"train"},
          f"{field}.splits", tuple(splits), "a non-empty subset of the dataset's evaluation "
          f"splits: {', '.join(s for s in source.splits if s != 'train')}")
    for k in ks:
      positive_int(k, f"{field}.ks")
    check(isinstance(periodic_queries, int) and periodic_queries >= 0,
          f"{field}.periodic_queries", periodic_queries, "an integer >= 0 (0: every query)")

  def queries(self, split: str) -> dict[str, np.ndarray]:
    """Queries of `split`: histories hold everything of the splits before it."""
    if split not in self._queries:
      ds, names = self.ctx.dataset, list(self.ctx.dataset.splits)
      before = [ds.split(s).columns for s in names[:names.index(split)]]
      cols = {k: np.concatenate([c[k] for c in before]) for k in ("user_id", "video_id",
                                                                  "order")}
      seqs = sequences.user_sequences(cols["user_id"], cols["video_id"], cols["order"])
      self._queries[split] = sequences.queries(
          seqs, ds.split(split).columns, self.ctx.run.data.history.max_len)
    return self._queries[split]

  def sample(self, split: str) -> np.ndarray:
    """The queries of `split` a periodic evaluation ranks (sorted row numbers; fixed)."""
    n = len(self.queries(split)["target"])
    if not self.periodic_queries or self.periodic_queries >= n:
      return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, self.periodic_queries, replace=False))

  def ranks(self, params, split: str, rows: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The unmasked and the history-masked rank of every query of `split` (of `rows`)."""
    q = self.queries(split)
    if rows is not None:
      q = {k: v[rows] for k, v in q.items()}
    bs, n = self.ctx.run.data.eval_batch_size, len(q["target"])
    out, masked = [], []
    for a in range(0, n, bs):
      chunk = {k: v[a:a + bs] for k, v in q.items() if k != "user"}
      m = len(chunk["target"])
      if m < bs:  # one static shape: pad the last chunk
        chunk = {k: np.concatenate([v, np.repeat(v[-1:], bs - m, axis=0)])
                 for k, v in chunk.items()}
      with activation_sharding(self.ctx.setup.mesh, self.ctx.setup.rules):  # catalog sharded
        ranks = jax.device_get(self._ranks(params, chunk, self.catalog))
      out.append(np.asarray(ranks[0])[:m])
      masked.append(np.asarray(ranks[1])[:m])
    empty = np.zeros(0, np.int64)
    return (np.concatenate(out) if out else empty, np.concatenate(masked) if masked else empty)

  def evaluate(self, enc, splits):
    out = {}
    cold = self.ctx.dataset.catalog.cold
    new = np.bincount(self.ctx.train_video_ids, minlength=len(cold))[:len(cold)] == 0
    periodic = splits is not None  # the runner's periodic evaluations name their splits
    for split in splits or self.splits:
      rows = self.sample(split) if periodic else np.arange(len(self.queries(split)["target"]))
      t0 = time.time()
      ranks, masked = self.ranks(enc.params, split, rows)
      seconds = time.time() - t0
      targets = self.queries(split)["target"][rows]
      target_cold, target_new = cold[targets], new[targets]
      for r, prefix in ((ranks, split), (masked, f"{split}/masked")):
        out.update(rank_metrics(r, self.ks, prefix))
        for group, sel in (("warm", ~target_cold), ("cold", target_cold), ("new", target_new)):
          out.update(rank_metrics(r[sel], self.ks, f"{prefix}/{group}"))
      out[f"{split}/full_sort_seconds"] = seconds
      logging.info("full sort of %s: %d queries x %d items in %.2f s", split, len(ranks),
                   len(cold), seconds)
    return out

  def table(self, metrics):
    cols = ("count",) + tuple(f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "mrr"))
    rows = sorted({k.rsplit("/", 1)[0] for k in metrics if k.endswith(f"/hr@{self.ks[0]}")})
    return table("split/targets", rows, cols, metrics) if rows else []
