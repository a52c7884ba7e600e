"""Reading the serving bundle back without the trainer: `load(export_dir)` checks every file
against the manifest (bundle_format.py: the files and the format versions) and refuses a bundle
that does not match, or of another version, in one line naming the file; `Bundle.recommend`
answers through two_stage.py.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from vidrec_jax.serving import fusion as fusion_lib
from vidrec_jax.serving import retrieval
from vidrec_jax.serving import two_stage
from vidrec_jax.serving.bundle_format import BundleError
from vidrec_jax.serving.bundle_format import file_sha256
from vidrec_jax.serving.bundle_format import function_shapes
from vidrec_jax.serving.bundle_format import FUSION
from vidrec_jax.serving.bundle_format import HISTORIES
from vidrec_jax.serving.bundle_format import HISTORY_ARRAYS
from vidrec_jax.serving.bundle_format import ITEM_ARRAYS
from vidrec_jax.serving.bundle_format import ITEMS
from vidrec_jax.serving.bundle_format import MANIFEST
from vidrec_jax.serving.bundle_format import RANKER
from vidrec_jax.serving.bundle_format import READS_VERSIONS
from vidrec_jax.serving.bundle_format import REQUIRED
from vidrec_jax.serving.bundle_format import THUMBNAIL_OFFSETS
from vidrec_jax.serving.bundle_format import THUMBNAILS
from vidrec_jax.serving.bundle_format import USER_INPUTS
from vidrec_jax.serving.bundle_format import USER_TOWER
from vidrec_jax.serving.bundle_format import USERS
from vidrec_jax.serving.two_stage import Histories
from vidrec_jax.serving.two_stage import Items


class Bundle:
  """A loaded serving bundle: `recommend(user_id, k)` (or `recommend(history=[...], k=...)`
  with a history tower) from its files alone."""

  def __init__(self, directory: str, manifest: dict, items: Items, users: dict[str, int],
               oov_row: int, user_tower, ranker, fusion: str,
               histories: Histories | None = None, retriever=None):
    self.directory, self.manifest, self.items = directory, manifest, items
    self.users, self.oov_row, self.fusion = users, oov_row, fusion
    self.histories = histories
    self.retriever = retriever or retrieval.Exact(items.retrieval)
    self.heads: tuple[str, ...] = tuple(manifest["heads"])
    self.k, self.candidates = int(manifest["k"]), int(manifest["candidates"])
    self.step = int(manifest["checkpoint_step"])
    self.exclude_watched = bool(manifest.get("exclude_watched", False))
    self._fuse = fusion_lib.compile_formula(fusion, self.heads)
    self.exported = (user_tower, ranker)  # the jax.export functions, as read (no user tower
    # for din: its user vector depends on the candidate, the ranker computes it)
    self.user_input = manifest.get("user_input", "row")
    self._thumbs = None
    if THUMBNAILS in manifest["files"]:
      with np.load(os.path.join(directory, THUMBNAIL_OFFSETS)) as z:
        self._thumb_offsets = z["offsets"]
      if os.path.getsize(os.path.join(directory, THUMBNAILS)):  # mapped, shared, not read
        self._thumbs = np.memmap(os.path.join(directory, THUMBNAILS), np.uint8, "r")
    self._user = None if user_tower is None else jax.jit(user_tower.call)
    self._rank = jax.jit(ranker.call)

  def row(self, user_id) -> int:
    """The vocabulary row of a raw user id; the OOV row when it is unknown."""
    return self.users.get(str(user_id), self.oov_row)

  def note(self, user_id) -> str | None:
    """The note for a user outside the vocabulary, else None."""
    return None if str(user_id) in self.users else two_stage.unknown_user_note(str(user_id))

  def recommend(self, user_id=None, k: int | None = None, *,
                history: Sequence[int] | None = None) -> list[dict]:
    """The top `k` (default: the manifest's k) videos, as records (rank, video_id, title,
    content_type, score, scores, cold), for a raw user id or, with a history tower, for a
    watch history given as catalog video ids in time order (a user the bundle does not know).

    A user id with a history tower reads the user's logged clicks from the bundle. An unknown
    user gets the out-of-vocabulary user's list (see `note`): with a history tower, as with an
    empty history, the videos most clicked in training. With `exclude_watched` in the
    manifest, the history's videos are never listed.

    Raises:
      ValueError: one line: k out of range, neither or both of user_id and history, a history
        for a bundle whose tower reads user ids, or history entries that are not catalog ids.
    """
    return self.answer_many([self.request(user_id, k, history)])[0]

  def request(self, user_id=None, k: int | None = None,
              history: Sequence[int] | None = None) -> dict:
    """A checked request for `answer_many` (`recommend`'s arguments; its ValueErrors)."""
    k = self.k if k is None else k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 < k <= self.candidates:
      raise ValueError(f"k={k!r} is not allowed; an integer 1 <= k <= {self.candidates} (the "
                       "candidates the ranker sees)")
    if (user_id is None) == (history is None):
      raise ValueError("give a user id or a watch history (a list of video ids), not "
                       f"{'both' if history is not None else 'neither'}")
    h = self.histories
    if h is None:
      if history is not None:
        raise ValueError("this bundle's user tower reads user ids, not watch histories; "
                         "recommend(user_id, k) instead (history towers: sasrec, din, "
                         "sequential)")
      return dict(k=int(k), row=self.row(user_id))
    if history is None:
      clicks = h.logged(self.row(user_id))
    else:
      if isinstance(history, (str, bytes)) or not isinstance(history, (list, tuple, np.ndarray)):
        raise ValueError(f"history must be a list of video ids, not {type(history).__name__}")
      bad = h.unknown(list(history))
      if bad:
        raise ValueError(f"history holds {len(bad)} entries that are not catalog video ids "
                         f"(integers 0..{len(h.vectors) - 1}): {bad[:5]!r}")
      clicks = np.asarray(history, np.int64)
    return dict(k=int(k), clicks=clicks)

  def answer_many(self, requests: Sequence[dict]) -> list[list[dict]]:
    """The records of several checked requests (`request`), with one retrieval call for all:
    what the HTTP service does with the requests that queue while it computes."""
    return two_stage.answer_many(
        self._user, self._rank, self.items, self._fuse, self.candidates, requests,
        histories=self.histories, exclude_watched=self.exclude_watched,
        candidate_attention=self.user_input == "history_candidate", retriever=self.retriever)

  def item_row(self, video_id) -> int | None:
    """The items row of a catalog video id, or None when the bundle does not serve it."""
    try:
      v = int(video_id)
    except (TypeError, ValueError):
      return None
    ids = self.items.video_ids  # ascending
    r = int(np.searchsorted(ids, v))
    return r if r < len(ids) and ids[r] == v else None

  def thumbnail(self, video_id) -> bytes | None:
    """The JPEG stored for a video at export, or None (no thumbnails, or none for it)."""
    r = self.item_row(video_id)
    if r is None or self._thumbs is None:
      return None
    a, b = self._thumb_offsets[r], self._thumb_offsets[r + 1]
    return bytes(self._thumbs[a:b]) if b > a else None

  def video(self, video_id) -> dict | None:
    """A served video's catalog fields: video_id, title, content_type, cold."""
    r = self.item_row(video_id)
    if r is None:
      return None
    it = self.items
    return dict(video_id=int(it.video_ids[r]), title=str(it.titles[r]),
                content_type=str(it.content_types[r]), cold=bool(it.cold[r]))

  def user_vector(self, user_id=None, history: Sequence[int] | None = None) -> np.ndarray:
    """The retrieval-space vector (R,) of a user id (its logged history, for a history tower)
    or of a history: the query stage 1 searches with (None: a history tower's user without
    clicks, who gets the popularity list)."""
    h = self.histories
    clicks = (None if h is None else h.logged(self.row(user_id)) if history is None
              else np.asarray(history, np.int64))
    return two_stage.user_query(self._user, self.items, row=self.row(user_id), clicks=clicks,
                                histories=h,
                                candidate_attention=self.user_input == "history_candidate")[0]


def _check_shape(path: str, what: str, got: Sequence[int], want: Any) -> None:
  if list(got) != list(want):
    raise BundleError(f"{path}: {what} has shape {list(got)}, the manifest says {want}")


def _arrays(path: str, names: Sequence[str], shapes: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The arrays `names` of an npz file, each of the manifest's shape."""
  with np.load(path, allow_pickle=False) as z:
    arrays = {n: z[n] for n in names if n in z}
  for n in names:
    if n not in arrays:
      raise BundleError(f"{path}: has no array {n!r}")
    _check_shape(path, f"array {n!r}", arrays[n].shape, shapes.get(n))
  return arrays


def load(export_dir: str) -> Bundle:
  """Loads a bundle written by `--mode=export`, checking every file against the manifest.

  Raises:
    BundleError: one line naming the file that is missing or does not match (size, sha256,
      shapes), or a manifest of another format version.
  """
  mpath = os.path.join(export_dir, MANIFEST)
  if not os.path.isfile(mpath):
    raise BundleError(f"{mpath}: missing; is {export_dir} a bundle written by --mode=export?")
  try:
    with open(mpath, encoding="utf-8") as f:
      manifest = json.load(f)
    listed = manifest["files"]
    shapes = manifest["shapes"]
    version = manifest["format_version"]
  except (ValueError, KeyError, TypeError) as e:
    raise BundleError(f"{mpath}: not a bundle manifest ({type(e).__name__}: {e})") from None
  if version not in READS_VERSIONS:
    raise BundleError(f"{mpath}: format version {version!r}, this reader reads "
                      f"{', '.join(map(str, READS_VERSIONS))}")
  user_input = manifest.get("user_input", "row")  # version 1: user-ID towers only
  if user_input not in USER_INPUTS:
    raise BundleError(f"{mpath}: user_input {user_input!r}; allowed: {', '.join(USER_INPUTS)}")
  for name in REQUIRED[user_input]:
    if name not in listed:
      raise BundleError(f"{os.path.join(export_dir, name)}: not listed in {mpath}")
  for name in listed:
    path = os.path.join(export_dir, name)
    if not os.path.isfile(path):
      raise BundleError(f"{path}: missing (listed in {mpath})")
    size = os.path.getsize(path)
    if size != listed[name]["bytes"]:
      raise BundleError(f"{path}: {size} bytes, the manifest says {listed[name]['bytes']}")
    if file_sha256(path) != listed[name]["sha256"]:
      raise BundleError(f"{path}: sha256 does not match the manifest (changed after export)")
  items = Items(**_arrays(os.path.join(export_dir, ITEMS), ITEM_ARRAYS, shapes["items"]))
  if np.any(np.diff(items.video_ids) <= 0):
    raise BundleError(f"{os.path.join(export_dir, ITEMS)}: video_ids are not ascending")
  functions = []
  for name, key in ((USER_TOWER, "user_tower"), (RANKER, "ranker")):
    if name not in REQUIRED[user_input]:
      functions.append(None)
      continue
    path = os.path.join(export_dir, name)
    with open(path, "rb") as f:
      try:
        exported = jax.export.deserialize(bytearray(f.read()))
      except Exception as e:  # noqa: BLE001 - any undecodable file: one line naming it
        raise BundleError(f"{path}: not a serialized jax.export function "
                          f"({type(e).__name__})") from None
    got = function_shapes(exported)
    if got != shapes[key]:
      raise BundleError(f"{path}: signature {got} does not match the manifest's {shapes[key]}")
    functions.append(exported)
  histories = None
  if user_input != "row":
    histories = Histories(max_len=int(manifest["max_len"]), **_arrays(
        os.path.join(export_dir, HISTORIES), HISTORY_ARRAYS, shapes.get("histories", {})))
  upath = os.path.join(export_dir, USERS)
  with open(upath, encoding="utf-8") as f:
    users = json.load(f)
  with open(os.path.join(export_dir, FUSION), encoding="utf-8") as f:
    fusion = f.read().strip()
  if not 0 < int(manifest["candidates"]) <= len(items):
    raise BundleError(f"{mpath}: candidates={manifest['candidates']} but {ITEMS} holds "
                      f"{len(items)} videos")
  spec = manifest.get("retrieval", {"name": "exact"})  # format 1: exact
  try:
    retriever = retrieval.load(spec["name"], export_dir, items.retrieval, spec)
  except Exception as e:  # noqa: BLE001 - any unreadable index: one line naming it
    raise BundleError(f"{mpath}: its {spec.get('name')!r} retrieval index does not load "
                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                      ) from None
  return Bundle(export_dir, manifest, items, {str(u): int(r) for u, r in users["rows"].items()},
                int(users["oov_row"]), *functions, fusion, histories, retriever)
