"""`ranking`: every logged impression of a split scored by every head, with each head's own
metrics (models/heads.py) for all, warm and cold-start videos, e.g. `test/cold/auc`,
`test/cold/oracle_gain` (with an oracle), `test/watch_time/mae`; and the same for the videos of
each content type of the catalog, e.g. `test/type_news/cold/auc`."""

from __future__ import annotations

import numpy as np
from absl import logging

from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.data.datasets import ORACLE
from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.eval.evaluators import Evaluator
from vidrec_jax.eval.evaluators import table
from vidrec_jax.models.heads import GroupData
from vidrec_jax.models.heads import HEADS

GROUPS = ("all", "warm", "cold")
TYPE_PREFIX = "type_"  # per content type metrics: {split}/type_{name}/{group}/{metric}


@EVALUATORS.register("ranking")
class RankingEvaluator(Evaluator):
  """Head metrics per split and video group.

  Args:
    splits: the splits of the final evaluation (periodic evaluation during training asks for
      'valid' only).
    ndcg_k: the cut-off of NDCG over each user's candidates.
  """

  def __init__(self, ctx, *, splits: tuple[str, ...], ndcg_k: int):
    super().__init__(ctx)
    self.splits, self.ndcg_k = tuple(splits), ndcg_k
    self.heads = tuple(ctx.run.model.heads)

  @classmethod
  def check(cls, field, source, *, splits, ndcg_k):
    check(len(splits) > 0 and set(splits) <= set(source.splits), f"{field}.splits",
          tuple(splits), f"a non-empty subset of the dataset's splits: {', '.join(source.splits)}")
    positive_int(ndcg_k, f"{field}.ndcg_k")

  def evaluate(self, enc, splits):
    dataset = self.ctx.dataset
    out: dict[str, float] = {}
    for split in splits or self.splits:
      cols = dataset.split(split).columns
      keep = enc.decodable[cols["video_id"]]
      if (~keep).any():
        bad = sorted(set(dataset.catalog.filename[cols["video_id"][~keep]].tolist()))
        logging.warning("%s: %d impressions of %d undecodable videos left out: %s", split,
                        (~keep).sum(), len(bad), ", ".join(bad[:10]))
      cols = {k: v[keep] for k, v in cols.items()}
      pred = enc.predict(cols)
      out[f"{split}/skipped_impressions"] = float((~keep).sum())
      cold = dataset.catalog.cold[cols["video_id"]]
      for group, sel in zip(GROUPS, (np.ones(len(cold), bool), ~cold, cold)):
        out.update(self._group(f"{split}/{group}", cols, pred, sel))
      kinds = dataset.catalog.content_type[cols["video_id"]].astype(str)
      for kind in sorted(set(kinds.tolist()) - {""}):
        of_kind = kinds == kind
        for group, sel in zip(GROUPS, (of_kind, of_kind & ~cold, of_kind & cold)):
          out.update(self._group(f"{split}/{TYPE_PREFIX}{kind}/{group}", cols, pred, sel))
      every = self._data(cols, pred, np.ones(len(cold), bool))
      for name in self.heads:
        out.update({f"{split}/{k}": v
                    for k, v in HEADS.get(name).split_metrics(every(name)).items()})
    return out

  def _data(self, cols: dict, pred: dict, sel: np.ndarray):
    """head name -> its GroupData over the rows `sel`."""
    dataset = self.ctx.dataset
    labels = {c: cols[c][sel] for c in dataset.label_columns}
    oracle = cols["oracle_prob"][sel] if dataset.has(ORACLE) else None
    return lambda name: GroupData(labels, pred[name][sel], cols["user_id"][sel], oracle,
                                  self.ndcg_k)

  def _group(self, prefix: str, cols: dict, pred: dict, sel: np.ndarray) -> dict:
    r = {f"{prefix}/count": float(sel.sum())}
    if not sel.any():
      return r
    data = self._data(cols, pred, sel)
    for name in self.heads:
      r.update({f"{prefix}/{k}": v for k, v in HEADS.get(name).metrics(data(name)).items()})
    return r

  def table(self, metrics):
    cols = ("count",)
    for name in self.heads:
      cols += tuple(c for c in HEADS.get(name).table_columns(self.ndcg_k) if c not in cols)
    splits = self.ctx.dataset.splits
    rows = sorted({k.rsplit("/", 1)[0] for k in metrics if k.count("/") == 2
                   and k.split("/")[0] in splits and k.split("/")[1] in GROUPS})
    lines = table("split/group", rows, cols, metrics)
    typed = sorted({k.rsplit("/", 1)[0] for k in metrics if k.count("/") == 3
                    and k.split("/")[0] in splits and k.split("/")[1].startswith(TYPE_PREFIX)
                    and k.split("/")[2] == "all"})
    if typed:
      lines += [""] + table("split/type", typed, cols, metrics)
    return lines
