"""--mode=recommend and --mode=export: a trained checkpoint's two-stage recommendations.

  recommend  top-k videos for one user (`--user`, the dataset's raw id): retrieval of the
             `recommend.candidates` nearest catalog videos by retrieval vector (the whole
             catalog, cold-start videos included, on the mesh by the logical axis 'catalog'),
             then the heads' predictions of those candidates fused by `recommend.fusion`;
             printed and written to WORKDIR/recommend/USER.json
  export     the serving bundle (vidrec_jax/serving/): the catalog's vectors, the user tower
             and the ranker as serialized `jax.export` functions, the user vocabulary, the
             fusion formula and a checksummed manifest

Both run the same exported user tower and ranker (`_Serving`), so a bundle answers exactly as
--mode=recommend does. The catalog is encoded once per checkpoint: its item vectors are kept in
WORKDIR/recommend/item_vectors-STEP.npz (the two most recent steps) and read back by every later
call, so a recommendation costs a user tower and one ranker call, not a pass over the videos. Served: model.name='two_tower' with the 'id' user tower (validate.py
refuses the others).
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
from vidrec_jax.eval.encode import Encoder
from vidrec_jax.models.partitioning import logical_to_spec
from vidrec_jax.serving import fusion as fusion_lib
from vidrec_jax.train import steps
from vidrec_jax.train.context import Context

# The bundle's functions are lowered for these platforms, so it serves on any of them.
PLATFORMS = ("cpu", "cuda", "tpu")


def user_rows(ctx: Context) -> dict[str, int]:
  """Raw user id (as the dataset's logs name it) -> user vocabulary row, for every user seen in
  training; any other id is the out-of-vocabulary user."""
  vocab, names = ctx.user_vocab, ctx.dataset.users
  ids = np.flatnonzero(vocab.table != vocab.size)
  raw = names[ids] if names is not None else ids
  return {str(r): int(vocab.table[i]) for r, i in zip(raw, ids)}


def _export(fn, *args: jax.ShapeDtypeStruct):
  """`fn` as a `jax.export` function for PLATFORMS (this machine's platform alone when a
  lowering for another one fails)."""
  try:
    return jax.export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
  except Exception as e:  # noqa: BLE001 - any lowering failure: serve this platform only
    logging.warning("export for %s failed (%s: %s); exporting for %s only", PLATFORMS,
                    type(e).__name__, str(e).splitlines()[0][:200], jax.default_backend())
    return jax.export.export(jax.jit(fn))(*args)


@dataclasses.dataclass
class _Serving:
  """A checkpoint's servable parts: the catalog's vectors and the exported functions."""

  items: serving.Items
  user_tower: jax.export.Exported
  ranker: jax.export.Exported
  users: dict[str, int]
  oov_row: int
  candidates: int
  step: int
  mesh: jax.sharding.Mesh
  rules: tuple


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


def _build(restored: Restored, workdir: str) -> _Serving:
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
  retrieval = np.asarray(jax.jit(lambda i: setup.model(host).retrieval_item(i))(
      vecs[ok]))
  cat = ctx.dataset.catalog
  ids = np.flatnonzero(ok)
  items = serving.Items(retrieval=retrieval, ranking=np.asarray(vecs[ok], np.float32),
                        video_ids=ids.astype(np.int64), titles=np.asarray(cat.title)[ids],
                        content_types=np.asarray(cat.content_type)[ids],
                        cold=np.asarray(cat.cold, bool)[ids])
  candidates = min(ctx.run.recommend.candidates, len(items))
  d = items.ranking.shape[1]

  def user_tower(rows):
    u = steps.encode_users_step(setup, host, {"user": rows})
    return {"user": u, "retrieval": setup.model(host).retrieval_user(u)}

  def ranker(u, cands):
    return steps.eval_step(setup, host, jnp.broadcast_to(u[None], cands.shape), cands)

  f32 = jnp.float32
  return _Serving(
      items=items,
      user_tower=_export(user_tower, jax.ShapeDtypeStruct((1,), jnp.int32)),
      ranker=_export(ranker, jax.ShapeDtypeStruct((d,), f32),
                     jax.ShapeDtypeStruct((candidates, d), f32)),
      users=user_rows(ctx), oov_row=ctx.user_vocab.size, candidates=candidates, step=step,
      mesh=setup.mesh, rules=setup.rules)


def _on_mesh(s: _Serving) -> serving.Items:
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
  run = restored[0].run
  r = run.recommend
  k = r.k if k is None else k
  s = _build(restored, workdir)
  if k > s.candidates:
    logging.warning("k=%d is more than the %d candidates: listing %d", k, s.candidates,
                    s.candidates)
  row = s.users.get(user, s.oov_row)
  records = serving.recommend(jax.jit(s.user_tower.call), jax.jit(s.ranker.call), row,
                              _on_mesh(s),
                              fusion_lib.compile_formula(r.fusion, tuple(run.model.heads)),
                              min(k, s.candidates), s.candidates)
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


def export(restored: Restored, workdir: str, export_dir: str | None = None,
           which: str = "latest") -> str:
  """Writes the serving bundle of the restored (latest or best: `which`) checkpoint to
  `export_dir` (default WORKDIR/export) and returns that folder; `vidrec_jax.serving.load`
  reads it."""
  export_dir = export_dir or os.path.join(workdir, "export")
  run = restored[0].run
  s = _build(restored, workdir)
  r = run.recommend
  meta = dict(heads=list(run.model.heads), k=min(r.k, s.candidates),
              candidates=s.candidates, checkpoint_step=s.step, checkpoint=which,
              dataset=run.data.dataset.name)
  if jax.process_index() != 0:
    return export_dir
  path = serving.write_bundle(export_dir, s.items, s.user_tower, s.ranker, s.users, s.oov_row,
                              r.fusion, meta)
  logging.info("wrote the serving bundle of checkpoint step %d (%d videos, %d users) to %s",
               s.step, len(s.items), len(s.users), path)
  print(f"exported checkpoint step {s.step} to {export_dir}")
  return export_dir

