"""The serving bundle's format (the files, their arrays and the manifest) and `write_bundle`,
which `--mode=export` (vidrec_jax/export.py) calls; bundle.py reads a bundle back.

A bundle (one folder) holds:

  items.npz            every servable catalog video: retrieval vectors, ranking item vectors,
                       video ids, titles, content types, cold-start flags
  user_tower.jaxexport the user tower, a serialized `jax.export` function: user vocabulary
                       rows (1,) -> {'user': (1, D) user vector, 'retrieval': (1, R)}; for a
                       tower that reads watch histories (manifest `user_input: history`), the
                       history's item vectors (1, L, H) and mask (1, L) -> the same
  histories.npz        history towers only (two_stage.Histories): every catalog video's vector
                       as a history item, each known user's last L logged clicks, the training
                       popularity that orders the list of a user with no history
  ranker.jaxexport     the ranker, a serialized `jax.export` function: a user vector (D,) and
                       candidate item vectors (C, D) -> {head: (C,) prediction}
  users.json           raw user id -> row (the user vocabulary's, or the histories' row), and
                       the out-of-vocabulary row
  fusion.txt           the fusion formula (fusion.py)
  manifest.json        format version, user_input, every file's sha256 and size, shapes, heads,
                       k, candidates, exclude_watched, the checkpoint step

Format versions: 1 (user-ID towers only, no histories.npz) is read as `user_input: row`; 2 adds
history towers. `load(export_dir)` checks every file against the manifest and refuses a bundle
that does not match, or of another version, in one line naming the file; `Bundle.recommend`
answers through two_stage.py.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Mapping

import jax
import numpy as np

from vidrec_jax.serving.two_stage import Histories
from vidrec_jax.serving.two_stage import Items

FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
ITEMS = "items.npz"
USER_TOWER = "user_tower.jaxexport"
RANKER = "ranker.jaxexport"
USERS = "users.json"
FUSION = "fusion.txt"
HISTORIES = "histories.npz"
THUMBNAILS = "thumbnails.bin"  # every item's JPEG, concatenated
THUMBNAIL_OFFSETS = "thumbnails.npz"  # offsets (N + 1,): item row r's bytes [o[r], o[r + 1])
FILES = (ITEMS, USER_TOWER, RANKER, USERS, FUSION)  # every bundle's; a history tower's adds
HISTORY_FILES = FILES + (HISTORIES,)
# din: no user tower file (its user vector depends on the candidate: the ranker computes it)
CANDIDATE_FILES = tuple(n for n in HISTORY_FILES if n != USER_TOWER)
ITEM_ARRAYS = ("retrieval", "ranking", "video_ids", "titles", "content_types", "cold")
HISTORY_ARRAYS = ("vectors", "offsets", "clicks", "popularity")
USER_INPUTS = ("row", "history", "history_candidate")
REQUIRED = {"row": FILES, "history": HISTORY_FILES, "history_candidate": CANDIDATE_FILES}


class BundleError(ValueError):
  """A bundle that does not match its manifest; str() is one line naming the file."""


def file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _avals(avals) -> list[dict]:
  return [dict(shape=[int(d) for d in a.shape], dtype=str(a.dtype)) for a in avals]


def function_shapes(exported) -> dict:
  outs = jax.tree_util.tree_unflatten(exported.out_tree, _avals(exported.out_avals))
  return {"in": _avals(exported.in_avals), "out": outs}


def write_bundle(export_dir: str, items: Items, user_tower, ranker,
                 users: Mapping[str, int], oov_row: int, fusion: str, meta: Mapping[str, Any],
                 histories: Histories | None = None, retriever=None,
                 retrieval_report: Mapping[str, Any] | None = None,
                 thumbnails: Iterable[bytes] | None = None,
                 user_input: str | None = None) -> str:
  """Writes a bundle (each file atomically, the manifest last) and returns its manifest path.

  Args:
    export_dir: the bundle's folder (created if missing).
    items: the servable catalog.
    user_tower: the user tower, a `jax.export.Exported`.
    ranker: the ranker, a `jax.export.Exported`.
    users: raw user id -> row: the user vocabulary's (every user seen in training), or, with
      `histories`, the user's row of logged clicks (every user who clicked).
    oov_row: the out-of-vocabulary row (with `histories`: a row without clicks).
    fusion: the fusion formula.
    meta: more manifest fields (heads, k, candidates, checkpoint_step, ...).
    histories: a history tower's histories (its user tower reads history vectors), else None.
    retriever: retrieval.py's index over `items.retrieval` (its files are written into the
      bundle), or None for exact search.
    retrieval_report: the index's `retrieval.build` report (the manifest's `retrieval`).
    thumbnails: one JPEG per item row, in order (b'' for none), streamed to the bundle; None
      for no thumbnails.
    user_input: 'row', 'history' or 'history_candidate' (din: `user_tower` is None and the
      ranker takes the history); default: 'history' with `histories`, else 'row'.
  """
  from vidrec_jax import files  # pylint: disable=g-import-not-at-top
  os.makedirs(export_dir, exist_ok=True)
  arrays = {name: np.asarray(getattr(items, name)) for name in ITEM_ARRAYS}
  with files.atomic_path(os.path.join(export_dir, ITEMS)) as tmp:
    np.savez(tmp, **arrays)
  user_input = user_input or ("row" if histories is None else "history")
  if user_input not in USER_INPUTS or (user_input == "history_candidate") != (user_tower is None):
    raise ValueError(f"user_input {user_input!r} with user_tower {user_tower!r}")
  for name, exported in ((USER_TOWER, user_tower), (RANKER, ranker)):
    if exported is None:
      if os.path.exists(os.path.join(export_dir, name)):
        os.remove(os.path.join(export_dir, name))  # a stale one from an earlier export
      continue
    with files.atomic_path(os.path.join(export_dir, name)) as tmp, open(tmp, "wb") as f:
      f.write(exported.serialize())
  files.write_json(os.path.join(export_dir, USERS),
                   {"rows": {str(u): int(r) for u, r in users.items()}, "oov_row": int(oov_row)})
  with files.atomic_path(os.path.join(export_dir, FUSION)) as tmp, open(tmp, "w") as f:
    f.write(fusion + "\n")
  shapes = {"items": {n: [int(d) for d in a.shape] for n, a in arrays.items()},
            "ranker": function_shapes(ranker)}
  if user_tower is not None:
    shapes["user_tower"] = function_shapes(user_tower)
  names = REQUIRED[user_input]
  if histories is not None:
    harrays = {n: np.asarray(getattr(histories, n)) for n in HISTORY_ARRAYS}
    with files.atomic_path(os.path.join(export_dir, HISTORIES)) as tmp:
      np.savez(tmp, **harrays)
    shapes["histories"] = {n: [int(d) for d in a.shape] for n, a in harrays.items()}
  elif os.path.exists(os.path.join(export_dir, HISTORIES)):
    os.remove(os.path.join(export_dir, HISTORIES))  # a stale one from an earlier export
  if np.any(np.diff(arrays["video_ids"]) <= 0):
    raise ValueError("items.video_ids must be ascending (a served video is found by search)")
  if thumbnails is not None:
    offsets = [0]
    with files.atomic_path(os.path.join(export_dir, THUMBNAILS)) as tmp, open(tmp, "wb") as f:
      for jpeg in thumbnails:
        f.write(jpeg)
        offsets.append(offsets[-1] + len(jpeg))
    if len(offsets) != len(items) + 1:
      raise ValueError(f"{len(offsets) - 1} thumbnails for {len(items)} items")
    with files.atomic_path(os.path.join(export_dir, THUMBNAIL_OFFSETS)) as tmp:
      np.savez(tmp, offsets=np.asarray(offsets, np.int64))
    names = names + (THUMBNAILS, THUMBNAIL_OFFSETS)
  index_files: tuple[str, ...] = ()
  if retriever is not None and retriever.name != "exact":
    index_files = retriever.save(export_dir)
  names = names + index_files
  report = dict(retrieval_report or {"name": "exact"})
  report["files"] = list(index_files)
  manifest = dict(meta)
  manifest.update(
      format_version=FORMAT_VERSION,
      user_input=user_input,
      retrieval=report,
      max_len=None if histories is None else int(histories.max_len),
      files={n: {"sha256": file_sha256(os.path.join(export_dir, n)),
                 "bytes": os.path.getsize(os.path.join(export_dir, n))} for n in names},
      shapes=shapes,
      platforms=list(ranker.platforms))
  path = os.path.join(export_dir, MANIFEST)
  files.write_json(path, manifest)
  return path
