"""The per-catalog arrays a sequential model reads (models/sequential.py): each video's
vocabulary row, its content tables (cached title embeddings, pooled cached backbone features),
whether it is published after the training period (`cold`: no negative of the training softmax)
and the log of its training frequency (the logQ correction of a sampled softmax)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from vidrec_jax.data import features
from vidrec_jax.data.titles import TitleInputs
from vidrec_jax.models import sequential

if TYPE_CHECKING:  # annotations only: the context imports this module
  from vidrec_jax.train.context import Context


def pooled_video_features(cache_dir: str, num_videos: int, dim: int,
                          whitening: features.Whitening | None = None,
                          flow_dir: str = "") -> np.ndarray:
  """(num_videos, 2 * dim): the mean and max of each video's cached frame features (through
  `whitening` when given, with the flow cache in `flow_dir` when it reads flow); zeros for a
  video without features (no file, or undecodable at extraction: reported there)."""
  table = features.load_cache(cache_dir)
  flows = features.load_cache(flow_dir) if whitening is not None and whitening.flow else {}
  out = np.zeros((num_videos, 2 * dim), np.float32)
  served = 0
  for vid, feats in table.items():
    field = flows.get(vid)
    if not len(feats) or (flows and (field is None or len(field) != len(feats))):
      continue  # no features, or no flow to whiten them with
    feats = feats if whitening is None else whitening(feats, field)
    out[vid] = np.concatenate([feats.mean(0), feats.max(0)])
    served += 1
  missing = num_videos - served
  if missing:
    logging.warning("%d of %d videos have no cached features: their items keep ID and title "
                    "features only", missing, num_videos)
  return out


def catalog_arrays(ctx: Context) -> dict[str, np.ndarray]:
  """The `catalog` input of a sequential model, row = video id."""
  n = len(ctx.dataset.catalog)
  out = {sequential.ROW: ctx.video_vocab(np.arange(n)),
         "cold": np.asarray(ctx.dataset.catalog.cold, bool)}
  tables = sequential.content_tables(ctx.run.model)
  if "title" in tables:
    t = ctx.run.model.text
    out["title"] = TitleInputs.cached(ctx.dataset.catalog.title, ctx.workdir.text, t.name,
                                      t.max_length).embeddings.astype(np.float32)
  if "video" in tables:
    out["video"] = pooled_video_features(ctx.workdir.features, n, tables["video"] // 2,
                                         ctx.whitening, ctx.workdir.flow)
  counts = np.bincount(ctx.train_video_ids, minlength=n).astype(np.float64)
  out["log_q"] = np.log((counts + 1.0) / (counts.sum() + n)).astype(np.float32)
  return out
