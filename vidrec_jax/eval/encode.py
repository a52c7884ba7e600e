"""Encoding for evaluation: every video of the catalog once, every user once, then any number of
(user, video) pairs scored cheaply. The encodings of one set of parameters are computed lazily
and shared by all evaluators of an evaluation."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from vidrec_jax.data import pipeline
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps
from vidrec_jax.train.context import Context


def _pad(x: np.ndarray, n: int) -> np.ndarray:
  if len(x) == n:
    return x
  return np.concatenate([x, np.zeros((n - len(x),) + x.shape[1:], x.dtype)])


class Encoder:
  """The jitted encode and score functions of one run, over its mesh."""

  def __init__(self, ctx: Context, show_progress: bool):
    self.ctx, self.setup, self.show_progress = ctx, ctx.setup, show_progress
    self.batch_size = ctx.run.data.eval_batch_size
    ps = self.setup.param_shardings
    self._items = jax.jit(functools.partial(steps.encode_items_step, self.setup),
                          in_shardings=(ps, None))
    self._users = jax.jit(functools.partial(steps.encode_users_step, self.setup),
                          in_shardings=(ps, None))
    self._score = jax.jit(functools.partial(steps.eval_step, self.setup),
                          in_shardings=(ps, None, None))
    self._score_history = jax.jit(functools.partial(steps.history_eval_step, self.setup),
                                  in_shardings=(ps, None, None, None))

  def _shard(self, batch: dict) -> dict:
    """A host batch that every process holds whole (padded to data.eval_batch_size rows, or a
    multiple of it) -> global arrays, each process putting in its own contiguous slice of the
    rows."""
    return mesh_lib.shard_batch(mesh_lib.process_rows(batch, "data.eval_batch_size"),
                                self.setup.mesh, self.setup.rules)

  @staticmethod
  def _get(tree):
    """Global arrays -> whole numpy arrays on every process."""
    if jax.process_count() == 1:
      return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)

  def items(self, params: dict, query_seed: int | None = None
            ) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """(num_videos, D) item vectors, a bool (num_videos,) flag of readable videos, and every
    retrieval task's embeddings of every video. With `query_seed`, each video's clip is a
    second view (random frames seeded by video) instead of the centre frames."""
    ctx, bs = self.ctx, self.batch_size
    ids = np.arange(len(ctx.dataset.catalog))
    vecs, valid, embs = [], [], []
    ds = pipeline.catalog_dataset(ids, ctx.sampler(cache_videos=0), batch_size=bs,
                                  options=ctx.loader_options, titles=ctx.video_inputs,
                                  query_seed=query_seed)
    with pipeline.iterate(ds) as it:
      for b in tqdm.tqdm(it, total=-(-len(ids) // bs), desc="eval: encode videos",
                         disable=not self.show_progress, mininterval=2.0, leave=False):
        n = len(b["video_id"])
        batch = {k: _pad(b[k], bs) for k in ctx.spec.item_keys}
        batch["video"] = _pad(ctx.video_vocab(b["video_id"]), bs)
        vec, emb = self._get(self._items(params, self._shard(batch)))
        vecs.append(np.asarray(vec)[:n])
        embs.append(jax.tree.map(lambda x, n=n: np.asarray(x)[:n], emb))
        valid.append(b["valid"].astype(bool))
    return (np.concatenate(vecs), np.concatenate(valid),
            jax.tree.map(lambda *xs: np.concatenate(xs), *embs))

  def users(self, params: dict) -> np.ndarray:
    """The vector of every user vocabulary row (the OOV row last)."""
    bs = self.batch_size
    rows = np.arange(self.ctx.user_vocab.size + 1, dtype=np.int32)
    out = []
    for a in range(0, len(rows), bs):
      chunk = rows[a:a + bs]
      v = self._users(params, self._shard({"user": _pad(chunk, bs)}))
      out.append(np.asarray(self._get(v))[:len(chunk)])
    return np.concatenate(out)

  def predict_history(self, params: dict, item_vecs: np.ndarray, users: np.ndarray,
                      videos: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
    """Head predictions for raw (user id, video id, time) impressions, each user encoded from
    their watch history before the impression's time."""
    ctx, bs = self.ctx, self.batch_size * 8
    outs = []
    for a in range(0, len(users), bs):
      n = min(bs, len(users) - a)
      hist, mask = ctx.click_history(users[a:a + n], times[a:a + n],
                                     ctx.run.data.history.max_len)
      batch = self._shard({"history": _pad(hist, bs), "history_mask": _pad(mask, bs),
                           "user": _pad(ctx.user_vocab(users[a:a + n]), bs),
                           "i": _pad(item_vecs[videos[a:a + n]], bs)})
      i = batch.pop("i")
      pred = self._get(self._score_history(params, batch, i, ctx.catalog))
      outs.append({k: np.asarray(v)[:n] for k, v in pred.items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}

  def predict(self, params: dict, user_vecs: np.ndarray, item_vecs: np.ndarray,
              users: np.ndarray, videos: np.ndarray) -> dict[str, np.ndarray]:
    """Head predictions for raw (user id, video id) pairs."""
    bs = self.batch_size * 8
    u_rows, outs = self.ctx.user_vocab(users), []
    for a in range(0, len(users), bs):
      n = min(bs, len(users) - a)
      batch = self._shard({"u": _pad(user_vecs[u_rows[a:a + n]], bs),
                           "i": _pad(item_vecs[videos[a:a + n]], bs)})
      outs.append({k: np.asarray(v)[:n]
                   for k, v in self._get(self._score(params, batch["u"], batch["i"])).items()})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}


@dataclasses.dataclass
class Encodings:
  """The encodings of one set of parameters, each computed on first use."""

  encoder: Encoder
  params: dict
  _views: dict = dataclasses.field(default_factory=dict)

  @functools.cached_property
  def _items(self):
    return self.encoder.items(self.params)

  @property
  def item_vectors(self) -> np.ndarray:
    return self._items[0]

  @property
  def decodable(self) -> np.ndarray:
    return self._items[1]

  @property
  def task_embeddings(self) -> dict[str, dict[str, np.ndarray]]:
    return self._items[2]

  @functools.cached_property
  def user_vectors(self) -> np.ndarray:
    return self.encoder.users(self.params)

  def view(self, query_seed: int):
    """(task embeddings, readable flags) of every video's second view with `query_seed`."""
    if query_seed not in self._views:
      _, ok, emb = self.encoder.items(self.params, query_seed)
      self._views[query_seed] = emb, ok
    return self._views[query_seed]

  def predict(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Head predictions for the impressions of `cols` (user_id, video_id, timestamp)."""
    if self.encoder.ctx.spec.history:
      return self.encoder.predict_history(self.params, self.item_vectors, cols["user_id"],
                                          cols["video_id"], cols["timestamp"])
    return self.encoder.predict(self.params, self.user_vectors, self.item_vectors,
                                cols["user_id"], cols["video_id"])
