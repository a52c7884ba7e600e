"""--mode=export: the serving bundle of a trained checkpoint (vidrec_jax/serving/: the catalog's
vectors, the user tower and the ranker as serialized `jax.export` functions, the user
vocabulary and histories, the fusion formula, the retrieval index tuned on held-out users, the
thumbnails and a checksummed manifest), built from the same servable as --mode=recommend
(vidrec_jax/recommend.py `build`, or vidrec_jax/rl/serve.py for an RL policy), so a bundle
answers exactly as --mode=recommend does."""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from vidrec_jax import recommend
from vidrec_jax import serving
from vidrec_jax.serving import retrieval
from vidrec_jax.serving.servable import Servable
from vidrec_jax.train.context import Context


def thumbnails(ctx: Context, video_ids: np.ndarray, size: int):
  """One JPEG (size x size, the middle frame; b'' when the video cannot be decoded) per video,
  in order, decoded by two threads (PyAV decodes without the GIL) and yielded as they come."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data import video_io  # pylint: disable=g-import-not-at-top
  cat = ctx.dataset.catalog

  def one(v: int) -> bytes:
    path = cat.path(int(v))
    if not path:
      return b""
    try:
      frame = video_io.middle_frame(path, size)
    except video_io.VideoDecodeError as e:
      logging.warning("no thumbnail for video %d: %s", v, e)
      return b""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=85)
    return buf.getvalue()
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    for a in range(0, len(video_ids), 256):  # a bounded window of work in flight
      yield from pool.map(one, video_ids[a:a + 256])


def query_vectors(s: Servable, n: int, seed: int) -> np.ndarray:
  """Retrieval-space vectors of up to `n` users drawn at random (`seed`) from the bundle's
  users (a history tower's from their logged clicks): the queries an index is tuned and
  measured on."""
  rows = np.array(sorted(set(s.users.values())), np.int64)
  rows = np.random.default_rng(seed).permutation(rows)[:n]
  user_fn = None if s.user_tower is None else jax.jit(s.user_tower.call)
  h = s.histories
  queries = (serving.user_query(user_fn, s.items, row=int(row),
                                clicks=None if h is None else h.logged(int(row)), histories=h,
                                candidate_attention=s.user_input == "history_candidate")[0]
             for row in rows)
  out = [q for q in queries if q is not None]  # users with nothing to go on have no query
  return np.stack(out) if out else np.zeros((0, s.items.retrieval.shape[1]), np.float32)


def export(restored: recommend.Restored, workdir: str, export_dir: str | None = None,
           which: str = "latest") -> str:
  """Writes the serving bundle of the restored (latest or best: `which`) checkpoint to
  `export_dir` (default WORKDIR/export) and returns that folder; `vidrec_jax.serving.load`
  reads it."""
  run = restored[0].run
  return export_servable(
      recommend.build(restored, workdir), run, workdir, export_dir, which,
      lambda ids, size: thumbnails(restored[0], ids, size))


def export_servable(s: Servable, run, workdir: str, export_dir: str | None, which: str,
                    thumbnail_fn, **meta_extra) -> str:
  """`export` of a built servable (a recommender's or an RL policy's) and its run's settings;
  `thumbnail_fn(video_ids, size)` yields each video's JPEG; `meta_extra` goes in the manifest's
  meta."""
  export_dir = export_dir or os.path.join(workdir, "export")
  r = run.recommend
  meta = dict(heads=list(s.heads), k=min(r.k, s.candidates),
              candidates=s.candidates, checkpoint_step=s.step, checkpoint=which,
              dataset=run.data.dataset.name, model=run.model.name,
              user_tower=run.model.user_tower.name, exclude_watched=s.exclude_watched,
              **meta_extra)
  if jax.process_index() != 0:
    return export_dir
  retriever, report = None, None
  choice = retrieval.resolve(r.retrieval, len(s.items))
  if choice != "exact":
    queries = query_vectors(s, r.retrieval_queries, seed=run.seed)
    half = len(queries) // 2
    retriever, report = retrieval.build(choice, np.asarray(s.items.retrieval),
                                        queries[:half], queries[half:], s.candidates,
                                        r.retrieval_target, seed=run.seed)
    logging.info("retrieval index: %s", report)
  thumbs = thumbnail_fn(s.items.video_ids, r.thumbnails) if r.thumbnails else None
  path = serving.write_bundle(export_dir, s.items, s.user_tower, s.ranker, s.users, s.oov_row,
                              r.fusion, meta, s.histories, retriever, report, thumbs,
                              s.user_input)
  logging.info("wrote the serving bundle of checkpoint step %d (%d videos, %d users) to %s",
               s.step, len(s.items), len(s.users), path)
  print(f"exported checkpoint step {s.step} to {export_dir}")
  return export_dir

