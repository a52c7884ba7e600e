"""Evaluation against the oracle: each video and user is encoded once, then every logged pair of
a split is scored, and metrics are reported for all, warm and cold-start videos."""

from __future__ import annotations

import functools

import jax
import numpy as np
import tqdm
from absl import logging
from jax.experimental import multihost_utils

from vidrec_jax.data import pipeline
from vidrec_jax.data import titles as titles_lib
from vidrec_jax.eval import metrics as M
from vidrec_jax.models import recommender
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps
from vidrec_jax.train.state import Setup


def _pad(x: np.ndarray, n: int) -> np.ndarray:
  if len(x) == n:
    return x
  pad = np.zeros((n - len(x),) + x.shape[1:], x.dtype)
  return np.concatenate([x, pad])


class Evaluator:
  """Holds the jitted eval functions for one Setup; call `evaluate(params)`."""

  def __init__(self, setup: Setup, data_dir: str, catalog: pipeline.Catalog,
               user_vocab: pipeline.Vocab, video_vocab: pipeline.Vocab, show_progress: bool,
               features_dir: str | None = None,
               titles: titles_lib.TitleInputs | None = None):
    self.setup, self.data_dir, self.catalog = setup, data_dir, catalog
    self.features_dir = features_dir
    self.titles = titles
    self.user_vocab, self.video_vocab = user_vocab, video_vocab
    self.config = setup.config
    self.show_progress = show_progress
    ps = setup.param_shardings
    self._items = jax.jit(functools.partial(steps.encode_items_step, setup),
                          in_shardings=(ps, None))
    self._users = jax.jit(functools.partial(steps.encode_users_step, setup),
                          in_shardings=(ps, None))
    self._score = jax.jit(functools.partial(steps.eval_step, setup),
                          in_shardings=(ps, None, None))
    self._splits = {}

  def _split(self, split: str) -> dict[str, np.ndarray]:
    if split not in self._splits:
      self._splits[split] = pipeline.read_columns(
          pipeline.open_source(self.data_dir, "impressions", split))
    return self._splits[split]

  def _shard(self, batch: dict) -> dict:
    """A host batch that every process holds whole -> global arrays, each process putting in
    its own contiguous slice of the rows."""
    pc, pi = jax.process_count(), jax.process_index()
    if pc > 1:
      n = len(next(iter(batch.values())))
      if n % pc:
        raise ValueError(f"evaluation batch of {n} rows is not divisible by the {pc} processes; "
                         "make data.eval_batch_size a multiple of the process count")
      batch = {k: v[pi * n // pc:(pi + 1) * n // pc] for k, v in batch.items()}
    return mesh_lib.shard_batch(batch, self.setup.mesh, self.setup.rules)

  @staticmethod
  def _get(tree):
    """Global arrays -> whole numpy arrays on every process."""
    if jax.process_count() == 1:
      return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)

  def item_vectors(self, params: dict, query_seed: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(num_videos, D) item vectors, a bool (num_videos,) flag of decodable videos, and the
    retrieval tasks' embeddings of every video. With `query_seed`, each video's clip is the
    visual-query view (random frames seeded by video) instead of the centre frames."""
    bs = self.config.data.eval_batch_size
    ids = np.arange(len(self.catalog))
    vecs, valid, embs = [], [], []
    ds = pipeline.catalog_dataset(self.config, self.catalog, ids, self.features_dir,
                                  self.titles, query_seed)
    keys = ("frames", "mask", "motion", "features", "next_features") + titles_lib.TITLE_KEYS
    for b in tqdm.tqdm(ds, total=-(-len(ids) // bs), desc="eval: encode videos",
                       disable=not self.show_progress, mininterval=2.0, leave=False):
      n = len(b["video_id"])
      batch = {k: _pad(b[k], bs) for k in keys if k in b}
      batch["video"] = _pad(self.video_vocab(b["video_id"]), bs)
      vec, emb = self._get(self._items(params, self._shard(batch)))
      vecs.append(np.asarray(vec)[:n])
      embs.append({k: np.asarray(v)[:n] for k, v in emb.items()})
      valid.append(b["valid"].astype(bool))
    return (np.concatenate(vecs), np.concatenate(valid),
            {k: np.concatenate([e[k] for e in embs]) for k in embs[0]})

  def retrieval(self, params: dict, emb: dict[str, np.ndarray], decodable: np.ndarray
                ) -> dict[str, float]:
    """Text -> video on the held-out (cold-start) videos: each cold video's title retrieves
    among the cold videos. Visual query: a second view of each video (random frames) retrieves
    among the whole catalog; reported for all and for cold query videos."""
    out = {}
    tasks = self.config.model.tasks
    if "text_match" in tasks:
      cold = np.flatnonzero(self.catalog.cold & decodable)
      ranks = M.retrieval_ranks(emb["text"][cold], emb["video"][cold], np.arange(len(cold)))
      out.update({f"text_match/cold/{k}": v for k, v in M.retrieval_metrics(ranks).items()})
      out["text_match/cold/count"] = float(len(cold))
    if "visual_query" in tasks:
      _, query_ok, query = self.item_vectors(params, self.config.eval.query_seed)
      rows = np.flatnonzero(decodable & query_ok)
      gallery = np.where(decodable[:, None], emb["visual"], 0.0)  # undecodable: never found
      ranks = M.retrieval_ranks(query["visual"][rows], gallery, rows)
      for group, sel in (("all", np.ones(len(rows), bool)), ("cold", self.catalog.cold[rows])):
        out.update({f"visual_query/{group}/{k}": v
                    for k, v in M.retrieval_metrics(ranks[sel]).items()})
        out[f"visual_query/{group}/count"] = float(sel.sum())
    return out

  def user_vectors(self, params: dict) -> np.ndarray:
    bs = self.config.data.eval_batch_size
    rows = np.arange(self.user_vocab.size + 1, dtype=np.int32)
    out = []
    for a in range(0, len(rows), bs):
      chunk = rows[a:a + bs]
      v = self._users(params, self._shard({"u": _pad(chunk, bs)})["u"])
      out.append(np.asarray(self._get(v))[:len(chunk)])
    return np.concatenate(out)

  def predict(self, params: dict, user_vecs: np.ndarray, item_vecs: np.ndarray,
              users: np.ndarray, videos: np.ndarray) -> dict[str, np.ndarray]:
    """Head predictions for raw (user id, video id) pairs."""
    bs = self.config.data.eval_batch_size * 8
    u_rows, outs = self.user_vocab(users), []
    for a in range(0, len(users), bs):
      n = min(bs, len(users) - a)
      batch = self._shard({"u": _pad(user_vecs[u_rows[a:a + n]], bs),
                           "i": _pad(item_vecs[videos[a:a + n]], bs)})
      outs.append({k: np.asarray(v)[:n]
                   for k, v in self._get(self._score(params, batch["u"], batch["i"])).items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}

  def evaluate(self, params: dict, splits=None) -> dict[str, float]:
    """Flat metrics such as `test/cold/auc`, `test/cold/oracle_gain`, `test/watch_time/mae`."""
    splits = splits or self.config.eval.splits
    item_vecs, decodable, emb = self.item_vectors(params)
    user_vecs = self.user_vectors(params)
    out: dict[str, float] = self.retrieval(params, emb, decodable)
    for split in splits:
      cols = self._split(split)
      keep = decodable[cols["video_id"]]
      if (~keep).any():
        bad = sorted(set(self.catalog.filename[cols["video_id"][~keep]].tolist()))
        logging.warning("%s: %d impressions of %d undecodable videos left out: %s", split,
                        (~keep).sum(), len(bad), ", ".join(bad[:10]))
      cols = {k: v[keep] for k, v in cols.items()}
      pred = self.predict(params, user_vecs, item_vecs, cols["user_id"], cols["video_id"])
      out[f"{split}/skipped_impressions"] = float((~keep).sum())
      for group, sel in (("all", np.ones(len(cols["click"]), bool)),
                         ("warm", cols["cold"] == 0), ("cold", cols["cold"] == 1)):
        out.update(self._group_metrics(f"{split}/{group}", cols, pred, sel))
      if "watch_time" in pred:
        out[f"{split}/watch_time/mse"] = M.mse(cols["watch_time"], pred["watch_time"])
        out[f"{split}/watch_time/mae"] = M.mae(cols["watch_time"], pred["watch_time"])
    return out

  def _group_metrics(self, prefix: str, cols: dict, pred: dict, sel: np.ndarray) -> dict:
    k = self.config.eval.ndcg_k
    y, users = cols["click"][sel], cols["user_id"][sel]
    r = {f"{prefix}/count": float(sel.sum()), f"{prefix}/click_rate": float(np.mean(y))
         if sel.any() else float("nan")}
    if "click" in pred and sel.any():
      p, o = pred["click"][sel], cols["oracle_prob"][sel]
      r[f"{prefix}/auc"] = M.auc(y, p)
      r[f"{prefix}/oracle_auc"] = M.auc(y, o)
      r[f"{prefix}/oracle_gain"] = M.oracle_gain(r[f"{prefix}/auc"], r[f"{prefix}/oracle_auc"])
      r[f"{prefix}/gauc"] = M.group_auc(users, y, p)
      r[f"{prefix}/logloss"] = M.logloss(y, p)
      r[f"{prefix}/ndcg@{k}"] = M.ndcg_at_k(users, y, p, k)
      r[f"{prefix}/oracle_ndcg@{k}"] = M.ndcg_at_k(users, y, o, k)
    if "watch_time" in pred and sel.any():
      r[f"{prefix}/watch_time_mse"] = M.mse(cols["watch_time"][sel], pred["watch_time"][sel])
      r[f"{prefix}/watch_time_mae"] = M.mae(cols["watch_time"][sel], pred["watch_time"][sel])
    if "like" in pred and sel.any():
      r[f"{prefix}/like_auc"] = M.auc(cols["like"][sel], pred["like"][sel])
    return r


RETRIEVAL_COLUMNS = ("count", "recall@1", "recall@5", "recall@10", "mrr")


def format_table(metrics: dict[str, float]) -> str:
  """A split x group table of the headline metrics, then one of the retrieval tasks."""
  cols = ("count", "auc", "oracle_auc", "oracle_gain", "gauc", "logloss", "ndcg@10",
          "watch_time_mae")
  groups = {k.rsplit("/", 1)[0] for k in metrics if k.count("/") == 2
            and k.split("/")[1] in ("all", "warm", "cold")}
  retrieval = sorted(g for g in groups if g.split("/")[0] in recommender.TASKS)
  lines = _table("split/group", sorted(groups - set(retrieval)), cols, metrics)
  if retrieval:
    lines += [""] + _table("task/queries", retrieval, RETRIEVAL_COLUMNS, metrics)
  return "\n".join(lines)


def _table(title: str, rows: list[str], cols: tuple[str, ...], metrics: dict) -> list[str]:
  lines = [title.ljust(18) + "".join(c.rjust(15) for c in cols)]
  for row in rows:
    vals = [metrics.get(f"{row}/{c}", float("nan")) for c in cols]
    lines.append(row.ljust(18) + "".join(
        (f"{v:15.0f}" if c == "count" else f"{v:15.4f}") for c, v in zip(cols, vals)))
  return lines
