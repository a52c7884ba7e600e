"""Ranking and regression metrics on numpy arrays.

Every rank metric of the project is computed here; the evaluators and tasks only name the keys.
Three input forms: per-user labels and scores (`ndcg_at_k`, the heads), 1-based ranks of one
target per query (`hit_rate`, `ndcg_of_ranks`, `mrr`: the retrieval tasks and full sort), and
ranked lists against sets of relevant items (`ndcg_of_lists`, `recall_of_lists`: two-stage).
"""

from __future__ import annotations

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks with ties given their average rank."""
  order = np.argsort(x, kind="mergesort")
  ranks = np.empty(len(x), np.float64)
  sx = x[order]
  starts = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1]])  # empty x: one empty tie group
  ends = np.r_[starts[1:], len(x)]
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # a tie's mean position
  return ranks


def _group_rows(groups: np.ndarray) -> list[np.ndarray]:
  """Each group's row indices, groups in sorted order, rows in input order: one stable sort,
  where a pass over every row per group (`groups == g`) grew as users × impressions."""
  groups = np.asarray(groups)
  if not len(groups):
    return []
  order = np.argsort(groups, kind="stable")
  g = groups[order]
  return np.split(order, np.flatnonzero(g[1:] != g[:-1]) + 1)


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """ROC AUC (Mann-Whitney, ties count half); NaN when only one class is present."""
  labels = np.asarray(labels) > 0.5
  n_pos, n_neg = labels.sum(), (~labels).sum()
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  r = _average_ranks(np.asarray(scores, np.float64))
  return float((r[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def group_auc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
  """Mean per-group AUC weighted by group size, over groups that have both classes."""
  total, weight = 0.0, 0
  for sel in _group_rows(groups):
    a = auc(labels[sel], scores[sel])
    if not np.isnan(a):
      total += a * len(sel)
      weight += len(sel)
  return total / weight if weight else float("nan")


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
  p = np.clip(np.asarray(probs, np.float64), eps, 1 - eps)
  y = np.asarray(labels, np.float64)
  return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def mse(y: np.ndarray, p: np.ndarray) -> float:
  return float(np.mean(np.square(np.asarray(y, np.float64) - p)))


def mae(y: np.ndarray, p: np.ndarray) -> float:
  return float(np.mean(np.abs(np.asarray(y, np.float64) - p)))


def dcg_discounts(k: int) -> np.ndarray:
  """The DCG discounts 1 / log2(position + 1) of positions 1..k."""
  return 1.0 / np.log2(np.arange(2, k + 2))


def _tie_aware_dcg(y: np.ndarray, scores: np.ndarray, discounts: np.ndarray) -> float:
  """DCG where tied scores share their positions' discounts: each item of a tie group gets the
  mean discount of the positions the group spans (the expected DCG over the orders of the
  ties; McSherry and Najork, ECIR 2008). Positions past the cut-off have discount 0."""
  order = np.argsort(-scores, kind="stable")
  s, g = scores[order], y[order]
  disc = np.zeros(len(s))
  disc[:min(len(discounts), len(s))] = discounts[:len(s)]
  starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
  ends = np.r_[starts[1:], len(s)]
  return float(sum(g[a:b].sum() * disc[a:b].mean() for a, b in zip(starts, ends)))


def ndcg_at_k(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int) -> float:
  """Mean NDCG@k over groups (users) that have at least one positive among their candidates;
  tied scores share their positions' discounts (no dependence on the input order)."""
  vals = []
  discounts = dcg_discounts(k)
  for sel in _group_rows(groups):
    y = np.asarray(labels[sel], np.float64)
    if y.sum() <= 0:
      continue
    ideal = np.sort(y)[::-1][:k]
    vals.append(_tie_aware_dcg(y, np.asarray(scores[sel], np.float64), discounts)
                / (ideal * discounts[:len(ideal)]).sum())
  return float(np.mean(vals)) if vals else float("nan")


def oracle_gain(model_auc: float, oracle_auc: float) -> float:
  """(AUC_model - 0.5) / (AUC_oracle - 0.5): 0 is chance, 1 is the oracle."""
  if np.isnan(model_auc) or np.isnan(oracle_auc) or oracle_auc <= 0.5:
    return float("nan")
  return float((model_auc - 0.5) / (oracle_auc - 0.5))


def retrieval_ranks(queries: np.ndarray, gallery: np.ndarray, targets: np.ndarray,
                    chunk: int = 1024) -> np.ndarray:
  """1-based rank of each query's target among the gallery by dot product; ties with the target
  count against it (a collapsed embedding ranks last, never first)."""
  gallery = gallery.astype(np.float64)
  ranks = np.zeros(len(queries), np.int64)
  for a in range(0, len(queries), chunk):  # a (chunk, gallery) score block at a time
    scores = queries[a:a + chunk].astype(np.float64) @ gallery.T
    own = scores[np.arange(len(scores)), targets[a:a + chunk]]
    ranks[a:a + chunk] = (scores >= own[:, None]).sum(axis=1)
  return ranks


def hit_rate(ranks: np.ndarray, k: int) -> float:
  """The share of queries whose target ranks within the first k; NaN without queries.

  HR@k and Recall@k are this one quantity when each query has one relevant item (its target):
  the share of a query's relevant items found in the first k is then 1 or 0. Callers keep the
  key their metrics have always had: `recall@k` for the retrieval tasks (`retrieval_metrics`),
  `hr@k` for the full-sort evaluator.

  Args:
    ranks: 1-based rank of each query's target.
    k: the cut-off.
  """
  ranks = np.asarray(ranks)
  return float(np.mean(ranks <= k)) if len(ranks) else float("nan")


def ndcg_of_ranks(ranks: np.ndarray, k: int) -> float:
  """Mean NDCG@k of queries with one relevant item: 1 / log2(rank + 1) for a target within the
  first k, else 0 (the ideal DCG is 1); per query what `ndcg_of_lists` gives a list with one
  relevant item. NaN without queries."""
  ranks = np.asarray(ranks, np.float64)
  if not len(ranks):
    return float("nan")
  return float(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0).mean())


def mrr(ranks: np.ndarray, k: int | None = None) -> float:
  """Mean reciprocal rank of 1-based target ranks; with `k`, MRR@k (a target past k counts
  0). NaN without queries."""
  ranks = np.asarray(ranks, np.float64)
  if not len(ranks):
    return float("nan")
  rr = 1.0 / ranks
  if k is not None:
    rr = np.where(ranks <= k, rr, 0.0)
  return float(rr.mean())


def retrieval_metrics(ranks: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
  """The retrieval tasks' keys: `recall@k` (`hit_rate`) and `mrr` (no cut-off)."""
  return {**{f"recall@{k}": hit_rate(ranks, k) for k in ks}, "mrr": mrr(ranks)}


def ndcg_of_lists(ranked: np.ndarray, relevant: list[set[int]], n: int) -> np.ndarray:
  """Per-user NDCG@n of ranked item lists (U, >= n) with binary relevance (the items of each
  user's set); NaN for a user with no relevant item."""
  disc = dcg_discounts(n)
  out = np.zeros(len(ranked))
  for u, (row, rel) in enumerate(zip(ranked, relevant)):
    gains = np.array([v in rel for v in row[:n]], np.float64)
    ideal = disc[:min(len(rel), n)].sum()
    out[u] = (gains * disc[:len(gains)]).sum() / ideal if ideal > 0 else np.nan
  return out


def recall_of_lists(ranked: np.ndarray, relevant: list[set[int]], k: int) -> np.ndarray:
  """Per-user share of the relevant items found in the first k of each list (Recall@k; with
  one relevant item per user it is `hit_rate`'s quantity); NaN for a user with none."""
  return np.array([len(rel & set(row[:k].tolist())) / len(rel) if rel else np.nan
                   for row, rel in zip(ranked, relevant)])
