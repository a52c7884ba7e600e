"""`microlens`: a MicroLens release folder read exactly as downloaded (Ni et al., "A
Content-Driven Micro-Video Recommendation Dataset at Scale", 2023), split leave-one-out by time.

  FOLDER/MicroLens-<size>_pairs.csv     user, item, timestamp, read by position (the release's
                                        header names them differently; a header line is
                                        detected and skipped)
  FOLDER/MicroLens-<size>_pairs.tsv     `user<TAB>item item item ...` in time order, used when
                                        there is no .csv (times are then each user's positions)
  FOLDER/MicroLens-<size>_title_en.csv  no header: `item,title` split at the first comma (the
                                        machine-translated titles contain commas)
  FOLDER/MicroLens-<size>_titles.csv    the 50K release's `item,title` file with a header
  FOLDER/MicroLens-<size>_videos/<item>.mp4
  FOLDER/MicroLens-<size>_covers/<item>.jpg

The size (`100k`, `50k`, `1m`, ...) comes from the file names. Arguments (`config.data.dataset`):
`path` (the folder). Nothing of MicroLens is shipped or downloaded here.

Bad input is reported and loses nothing else: rows with a missing field or a timestamp that is
not an integer, and exact duplicate rows, are counted, the first few named, and skipped; titles
with invalid UTF-8 keep their text with U+FFFD replacements (counted and named); an item whose
video is missing, empty or undecodable (a truncated download) is clipped from its cover image
instead (a one-frame clip: PyAV reads the JPEG), counted and named, and one with neither keeps
its ID and title features.
"""

from __future__ import annotations

import csv
import io
import os
import re
from typing import Any, Mapping

import numpy as np
from absl import logging

from vidrec_jax.config_checks import check
from vidrec_jax.data import tfds_logs
from vidrec_jax.data import video_io
from vidrec_jax.data.datasets import DATASETS
from vidrec_jax.data.datasets import schema
from vidrec_jax.data.datasets.logs import LogSource
from vidrec_jax.data.datasets.logs import report
from vidrec_jax.data.datasets.logs import Rows
from vidrec_jax.data.text_clean import decode_utf8

PARTS = ("pairs.csv", "pairs.tsv", "title_en.csv", "titles.csv", "videos", "covers")
_NAME = re.compile(r"^MicroLens-([0-9]+[A-Za-z]*)_(" + "|".join(
    re.escape(p) for p in PARTS) + r")$")


def release(root: str) -> tuple[str, dict[str, str]]:
  """(the release size named by its files, part -> path) of a MicroLens folder; a one-line
  DataError when there is none, or files of two sizes."""
  if not os.path.isdir(root):
    raise schema.DataError(f"MicroLens folder {root} does not exist")
  found: dict[str, dict[str, str]] = {}
  for name in sorted(os.listdir(root)):
    m = _NAME.match(name)
    if m:
      found.setdefault(m.group(1), {})[m.group(2)] = os.path.join(root, name)
  if len(found) != 1:
    what = (f"files of {len(found)} releases ({', '.join(sorted(found))})" if found
            else "no MicroLens-<size>_pairs.csv / _pairs.tsv")
    raise schema.DataError(f"{root} holds {what}; expected one release's files as downloaded "
                           "(MicroLens-100k_pairs.csv, MicroLens-100k_title_en.csv, "
                           "MicroLens-100k_videos/, ...)")
  size, parts = next(iter(found.items()))
  if "pairs.csv" not in parts and "pairs.tsv" not in parts:
    raise schema.DataError(f"{root}: MicroLens-{size} has no _pairs.csv or _pairs.tsv")
  return size, parts


def _pairs_csv(path: str) -> Rows:
  """The rows of a pairs .csv read by position (bad rows in `rows.bad`)."""
  rows = Rows()
  with open(path, newline="", encoding="utf-8", errors="replace") as f:
    for n, row in enumerate(csv.reader(f), start=1):
      fields = [x.strip() for x in row]
      if n == 1 and len(fields) >= 3 and not fields[2].lstrip("-").isdigit():
        continue  # a header (the release's names its columns differently)
      try:
        if len(fields) != 3 or not fields[0] or not fields[1]:
          raise ValueError
        time = int(fields[2])
      except ValueError:
        rows.bad.add(f"line {n} ({','.join(fields)[:60]!r})")
        continue
      rows.add(fields[0], fields[1], time, n)
  return rows


def _pairs_tsv(path: str) -> Rows:
  """The rows of a pairs .tsv: each user's items in time order, the position in the sequence
  standing for the time (bad lines in `rows.bad`, a user's line given again in
  `rows.duplicates`)."""
  rows = Rows()
  with open(path, encoding="utf-8", errors="replace") as f:
    for n, line in enumerate(f, start=1):
      if not line.strip():
        continue
      user, tab, items = line.rstrip("\n").partition("\t")
      user, seq = user.strip(), items.split()
      if not tab or not user or not seq:
        rows.bad.add(f"line {n} ({line.strip()[:60]!r})")
        continue
      if user in rows.users:
        rows.duplicates.add(f"line {n} (user {user} again)")
        continue
      for k, item in enumerate(seq):
        rows.add(user, item, k, n)
  return rows


def _titles(parts: dict[str, str]) -> dict[str, str]:
  """item -> title from `_title_en.csv` (no header, split at the first comma) or `_titles.csv`
  (header `item,title`); invalid UTF-8 replaced, reported."""
  titles: dict[str, str] = {}
  bad, replaced = [], []
  if "title_en.csv" in parts:
    path = parts["title_en.csv"]
    with open(path, "rb") as f:
      for n, raw in enumerate(f, start=1):
        text, count = decode_utf8(raw.rstrip(b"\r\n"))
        item, comma, title = text.partition(",")
        if not comma or not item.strip():
          bad.append(f"line {n}")
          continue
        if count:
          replaced.append(f"line {n} (item {item.strip()})")
        titles.setdefault(item.strip(), title.strip())
  elif "titles.csv" in parts:
    path = parts["titles.csv"]
    with open(path, "rb") as f:
      text, count = decode_utf8(f.read())
    if count:
      replaced.append(f"{count} sequences")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    for n, row in enumerate(reader, start=2):
      if len(row) < 2 or not row[0].strip():
        bad.append(f"line {n}")
        continue
      titles.setdefault(row[0].strip(), ",".join(row[1:]).strip())
  else:
    logging.warning("MicroLens folder has no _title_en.csv or _titles.csv: items keep empty "
                    "titles")
    return titles
  report("title rows without an item id", path, bad)
  report("titles with invalid UTF-8 (kept with U+FFFD replacements)", path, replaced)
  return titles


def _decodable(path: str) -> bool:
  """Whether the file opens and its first frame decodes (a truncated download does not)."""
  try:
    video_io.read_frames(path, max_frames=1)
    return True
  except video_io.VideoDecodeError:
    return False


def _media(parts: dict[str, str], ids: np.ndarray) -> np.ndarray:
  """Each item's clip source: its video, else its cover image, else '' (ID and title only)."""
  def files(part: str, suffix: str) -> dict[str, str]:
    folder = parts.get(part, "")
    names = sorted(os.listdir(folder)) if folder and os.path.isdir(folder) else []
    return {n[:-len(suffix)]: os.path.join(folder, n) for n in names if n.lower().endswith(suffix)}
  videos, covers = files("videos", ".mp4"), files("covers", ".jpg")
  out, to_cover, neither = [], [], []
  for i in ids:
    path = videos.get(i, "")
    if path and _decodable(path):
      out.append(path)
      continue
    cover = covers.get(i, "")
    (to_cover if cover else neither).append(
        f"{i} ({'no video' if not path else 'undecodable video'})")
    out.append(cover)
  root = os.path.dirname(next(iter(parts.values())))
  report("items clipped from their cover image instead of their video", root, to_cover)
  report("items with neither a decodable video nor a cover (ID and title only)", root, neither)
  return np.array(out)


class MicroLens(LogSource):
  """A MicroLens release (any size) from its folder as downloaded."""

  arguments = {"path": "", "min_interactions": 5, "keep_last": 13}  # MicroLens' protocol

  def validate(self, args: Mapping[str, Any]) -> None:
    super().validate(args)
    check(isinstance(args["path"], str) and bool(args["path"]), "data.dataset.path",
          args["path"], "the MicroLens release folder (MicroLens-100k_pairs.csv, ...)")

  def fingerprint(self, args):
    _, parts = release(args["path"])
    out = {}
    for part in sorted(parts):
      p = parts[part]
      paths = ([os.path.join(p, n) for n in sorted(os.listdir(p))] if os.path.isdir(p) else [p])
      for q in paths:
        out[os.path.relpath(q, args["path"])] = [os.path.getsize(q), int(os.path.getmtime(q))]
    return out

  def read(self, args) -> tfds_logs.LogTables:
    size, parts = release(args["path"])
    path = parts.get("pairs.csv") or parts["pairs.tsv"]
    rows = _pairs_csv(path) if path.endswith(".csv") else _pairs_tsv(path)
    report("rows with a missing field or a timestamp that is not an integer", path, rows.bad)
    if not len(rows):
      raise schema.DataError(f"{path} holds no valid interaction")
    users, items, times = rows.finish()
    report("duplicate rows", path, rows.duplicates)
    del rows  # its parse buffers (32 bytes a row)
    titles = _titles(parts)
    ids = np.sort(items.vocab)
    logging.info("MicroLens-%s: %d interactions of %d users with %d items", size, len(times),
                 len(users.vocab), len(ids))
    return self.tables(args, ids, np.array([titles.get(i, "") for i in ids]),
                       np.full(len(ids), ""), _media(parts, ids), users, items, times)


DATASETS.register("microlens", MicroLens())
