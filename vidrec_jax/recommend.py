"""--mode=recommend: a trained checkpoint's two-stage recommendations for one user (`--user`, the
dataset's raw id): retrieval of the `recommend.candidates` nearest catalog videos by retrieval
vector (the whole catalog, cold-start videos included, on the mesh by the logical axis
'catalog'), then the heads' predictions of those candidates fused by `recommend.fusion`;
printed and written to WORKDIR/recommend/USER.json. `build` makes the checkpoint's servable
(the catalog's vectors, the user tower and the ranker as `jax.export` functions), which
--mode=export (vidrec_jax/export.py) writes as the bundle: both run the same functions, so a
bundle answers exactly as --mode=recommend does. The catalog is encoded once per checkpoint: its
item vectors are kept in WORKDIR/recommend/item_vectors-STEP.npz (the two most recent steps) and
read back by every later call, so a recommendation costs a user tower and one ranker call, not
a pass over the videos.

Served (validate.py refuses the others in one line):
  two_tower + id user tower      user vocabulary rows -> user vectors; the heads rank
  two_tower + sasrec user tower  the user's watch history (logged clicks, the last
                                 data.history.max_len) -> user vectors; the heads rank
  two_tower + din user tower     retrieval by the history's mean item vector (item-to-item);
                                 the ranker attends over the history once per candidate
  sequential (sasrec)            the history -> the user state; retrieval and ranking are its
                                 dot product with every item (one head, `score`)
  policy (the RL experiment)     built by vidrec_jax/rl/serve.py (--policy=NAME), served by
                                 `recommend_servable` and export.py's `export_servable`
A history tower's bundle holds every catalog video's vector as a history item and each user's
logged clicks, so it also answers for a history given in the request; with
`recommend.exclude_watched` the history's videos are not listed, and a user with no history gets
the videos most clicked in training.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from vidrec_jax import files
from vidrec_jax import serving
from vidrec_jax.data import sequences
from vidrec_jax.eval.encode import Encoder
from vidrec_jax.models import user_towers
from vidrec_jax.models.partitioning import logical_to_spec
from vidrec_jax.serving import fusion as fusion_lib
from vidrec_jax.serving.servable import Servable
from vidrec_jax.serving.servable import export_fn
from vidrec_jax.train import catalog as catalog_lib
from vidrec_jax.train import steps
from vidrec_jax.train.context import Context
from vidrec_jax.validate import serving_heads

def user_rows(ctx: Context) -> dict[str, int]:
  """Raw user id (as the dataset's logs name it) -> user vocabulary row, for every user seen in
  training; any other id is the out-of-vocabulary user."""
  vocab, names = ctx.user_vocab, ctx.dataset.users
  ids = np.flatnonzero(vocab.table != vocab.size)
  raw = names[ids] if names is not None else ids
  return {str(r): int(vocab.table[i]) for r, i in zip(raw, ids)}


def _history_kind(ctx: Context) -> bool:
  """Whether the run's users are encoded from watch histories (sequential, or a history user
  tower) rather than from a user-ID table."""
  return ctx.run.model.name == "sequential" or bool(ctx.spec.history)


Restored = tuple[Context, dict, int]  # experiment.restore: the run's context, params, step


KEEP_ITEM_VECTORS = 2  # checkpoints whose item vectors stay cached


def item_vectors(ctx: Context, params: dict, step: int, workdir: str
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(vectors, decodable) of every catalog video under the checkpoint of `step`: read from
  the workdir's cache when this step's are there, else encoded and cached (one process)."""
  folder = os.path.join(workdir, "recommend")
  path = os.path.join(folder, f"item_vectors-{step}.npz")
  cache = jax.process_count() == 1
  if cache and os.path.exists(path):
    with np.load(path) as z:
      if len(z["ok"]) == len(ctx.dataset.catalog):
        logging.info("item vectors of checkpoint step %d read from %s", step, path)
        return z["vectors"], z["ok"]
  if ctx.run.model.name == "sequential":  # ID + catalog content: nothing to decode
    model = ctx.setup.model(params)
    vecs = jax.jit(model.all_items)(catalog_lib.catalog_arrays(ctx))
    ok = np.ones(len(ctx.dataset.catalog), bool)
  else:
    vecs, ok, _ = Encoder(ctx, show_progress=False).items(params)
  vecs, ok = np.asarray(vecs, np.float32), np.asarray(ok, bool)
  logging.info("encoded the catalog's %d videos under checkpoint step %d", len(ok), step)
  if cache:
    os.makedirs(folder, exist_ok=True)
    with files.atomic_path(path) as tmp:
      np.savez(tmp, vectors=vecs, ok=ok)
    older = sorted((n for n in os.listdir(folder)
                    if n.startswith("item_vectors-") and n.endswith(".npz")),
                   key=lambda n: os.path.getmtime(os.path.join(folder, n)))
    for n in older[:-KEEP_ITEM_VECTORS]:
      os.remove(os.path.join(folder, n))
  return vecs, ok


def _user_rows_with_clicks(ctx: Context) -> tuple[dict[str, int], serving.Histories]:
  """Raw user id -> row of logged clicks, and the histories' arrays (their item vectors are
  filled in by the caller): each user's last data.history.max_len positives over all splits,
  in time order; the row after the last user has none (unknown users)."""
  max_len = ctx.run.data.history.max_len
  ds = ctx.dataset
  cols = [ds.split(s).columns for s in ds.splits]
  # A next-item log (sequential) is every record, ordered by its `order`; an impression log's
  # history is its positives by time, as the tower was trained (ClickHistory).
  pos = [c["click"] > 0 if "click" in c else np.ones(len(c["user_id"]), bool) for c in cols]
  order = "order" if ctx.run.model.name == "sequential" else "timestamp"
  seqs = sequences.user_sequences(*(np.concatenate([c[k][p] for c, p in zip(cols, pos)])
                                    for k in ("user_id", "video_id", order)))
  users = np.fromiter(seqs, np.int64, len(seqs))
  last = [seqs[int(u)][-max_len:] for u in users]
  names = ds.users
  raw = names[users] if names is not None else users
  train = ds.split("train").columns
  tpos = train["click"] > 0 if "click" in train else np.ones(len(train["video_id"]), bool)
  n = len(ds.catalog)
  popularity = np.bincount(np.asarray(train["video_id"])[tpos], minlength=n)[:n]
  h = serving.Histories.from_rows(last, np.zeros((n, 0), np.float32), popularity, max_len)
  return {str(r): i for i, r in enumerate(raw)}, h


def build(restored: Restored, workdir: str) -> Servable:
  """The restored checkpoint's catalog vectors (cached per checkpoint), and its exported user
  tower and ranker."""
  ctx, params, step = restored
  setup = ctx.setup
  vecs, ok = item_vectors(ctx, params, step, workdir)
  if not ok.all():
    logging.warning("%d of %d catalog videos could not be decoded: they are not served",
                    int((~ok).sum()), len(ok))
  if not ok.any():
    raise FileNotFoundError("no catalog video could be decoded: nothing to recommend")
  # The exported functions close over host copies of the parameters: they are self-contained.
  host = (jax.device_get(params) if jax.process_count() == 1
          else multihost_utils.process_allgather(params, tiled=True))
  sequential = ctx.run.model.name == "sequential"
  retrieval_vecs = (vecs[ok] if sequential else  # the sequential model ranks by the same ones
                    np.asarray(jax.jit(lambda i: setup.model(host).retrieval_item(i))(
                        vecs[ok])))
  cat = ctx.dataset.catalog
  ids = np.flatnonzero(ok)
  items = serving.Items(retrieval=retrieval_vecs, ranking=np.asarray(vecs[ok], np.float32),
                        video_ids=ids.astype(np.int64), titles=np.asarray(cat.title)[ids],
                        content_types=np.asarray(cat.content_type)[ids],
                        cold=np.asarray(cat.cold, bool)[ids])
  candidates = min(ctx.run.recommend.candidates, len(items))
  d = items.ranking.shape[1]
  f32 = jnp.float32

  attends = user_towers.tower_class(ctx.run.model).needs_candidate  # din
  if sequential:
    def ranker(u, cands):
      return {"score": cands @ u}
  else:
    def ranker(u, cands):
      return steps.eval_step(setup, host, jnp.broadcast_to(u[None], cands.shape), cands)
  if not attends:
    ranker = export_fn(ranker, jax.ShapeDtypeStruct((d,), f32),
                     jax.ShapeDtypeStruct((candidates, d), f32))
  common = dict(items=items, candidates=candidates, step=step, mesh=setup.mesh,
                rules=setup.rules, heads=serving_heads(ctx.run.model),
                exclude_watched=bool(ctx.run.recommend.exclude_watched))
  if not _history_kind(ctx):
    def user_tower(rows):
      u = steps.encode_users_step(setup, host, {"user": rows})
      return {"user": u, "retrieval": setup.model(host).retrieval_user(u)}
    return Servable(user_tower=export_fn(user_tower, jax.ShapeDtypeStruct((1,), jnp.int32)),
                    ranker=ranker, users=user_rows(ctx), oov_row=ctx.user_vocab.size, **common)

  model = setup.model(host)
  if sequential:
    history_vectors = vecs  # the same item representations
    def user_tower(v, mask):
      u = setup.model(host).states_from_vectors(v, mask)
      return {"user": u, "retrieval": u}
  else:
    history_vectors = np.asarray(jax.jit(lambda c: model.history_items(
        jnp.arange(len(cat)), c))(catalog_lib.catalog_arrays(ctx)), np.float32)
    def user_tower(v, mask):
      m = setup.model(host)
      u = m.encode_history_vectors(v, mask)
      return {"user": u, "retrieval": m.retrieval_user(u)}
  users, histories = _user_rows_with_clicks(ctx)
  histories = dataclasses.replace(histories, vectors=history_vectors)
  max_len, h = histories.max_len, history_vectors.shape[1]
  history_shapes = (jax.ShapeDtypeStruct((1, max_len, h), f32),
                    jax.ShapeDtypeStruct((1, max_len), f32))
  if attends:
    # The user vector depends on the candidate: the ranker attends over the history once per
    # candidate; retrieval is item-to-item (two_stage.answer), so there is no user tower.
    def attending_ranker(v, mask, cands):
      c = cands.shape[0]
      u = setup.model(host).encode_history_vectors(
          jnp.broadcast_to(v[None], (c,) + v.shape), jnp.broadcast_to(mask[None], (c,) +
                                                                     mask.shape), cands)
      return steps.eval_step(setup, host, u, cands)
    return Servable(user_tower=None, ranker=export_fn(
        attending_ranker, jax.ShapeDtypeStruct((max_len, h), f32),
        jax.ShapeDtypeStruct((max_len,), f32), jax.ShapeDtypeStruct((candidates, d), f32)),
                    users=users, oov_row=len(users), histories=histories,
                    user_input="history_candidate", **common)
  return Servable(user_tower=export_fn(user_tower, *history_shapes), ranker=ranker,
                  users=users, oov_row=len(users), histories=histories, user_input="history",
                  **common)


def _answer(s: Servable, user: str, k: int, fuse) -> list[dict]:
  """The records for raw user id `user`, as `serving.Bundle.recommend` gives them."""
  row = s.users.get(user, s.oov_row)
  h = s.histories
  return serving.answer(
      None if s.user_tower is None else jax.jit(s.user_tower.call), jax.jit(s.ranker.call),
      _on_mesh(s), fuse, k, s.candidates, row=row,
      clicks=None if h is None else h.logged(row), histories=h,
      exclude_watched=s.exclude_watched, candidate_attention=s.user_input == "history_candidate")


def _on_mesh(s: Servable) -> serving.Items:
  """The items with their retrieval vectors laid out over the mesh by the logical axis
  'catalog': the retrieval stage's scores and top-k run sharded by catalog rows (one process;
  with several, every process holds the whole catalog)."""
  x = s.items.retrieval
  if jax.process_count() > 1:
    return s.items
  spec = logical_to_spec(("catalog", None), s.rules, x.shape, s.mesh)
  return dataclasses.replace(s.items, retrieval=jax.device_put(x, NamedSharding(s.mesh, spec)))


def _file_name(user: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]", "_", user) or "_"


def recommend(restored: Restored, workdir: str, user: str, k: int | None = None,
              which: str = "latest") -> dict:
  """Prints the top-k videos for `user` and writes them to WORKDIR/recommend/USER.json.

  Args:
    restored: `experiment.restore`'s context, parameters and step of the `which` checkpoint
      (the run's `recommend` settings: k, candidates, fusion).
    workdir: the trained workdir.
    user: the dataset's raw user id; an unknown one gets the out-of-vocabulary user's list and
      a note (stderr and the JSON's `note`).
    k: list length (default: recommend.k); at most the candidates the ranker sees.
    which: 'latest' or 'best' checkpoint.

  Returns:
    The JSON written: user, k, checkpoint, checkpoint_step, fusion, candidates, records
    (rank, video_id, title, content_type, score, scores, cold) and, for an unknown user, note.
  """
  return recommend_servable(build(restored, workdir), restored[0].run, workdir, user, k, which)


def recommend_servable(s: Servable, run, workdir: str, user: str, k: int | None = None,
                       which: str = "latest") -> dict:
  """`recommend` of a built servable (a recommender's or an RL policy's) and its run's
  settings."""
  r = run.recommend
  k = r.k if k is None else k
  if k > s.candidates:
    logging.warning("k=%d is more than the %d candidates: listing %d", k, s.candidates,
                    s.candidates)
  records = _answer(s, user, min(k, s.candidates), fusion_lib.compile_formula(r.fusion, s.heads))
  out = dict(user=user, k=k, checkpoint=which, checkpoint_step=s.step, fusion=r.fusion,
             candidates=s.candidates, records=records)
  if user not in s.users:
    out["note"] = serving.unknown_user_note(user)
  if jax.process_index() != 0:
    return out
  if "note" in out:
    print(f"note: {out['note']}", file=sys.stderr)
  for rec in records:
    print(serving.format_record(rec))
  path = os.path.join(workdir, "recommend", _file_name(user) + ".json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files.write_json(path, out)
  logging.info("wrote %d recommendations for user %r (checkpoint step %d) to %s", len(records),
               user, s.step, path)
  return out
