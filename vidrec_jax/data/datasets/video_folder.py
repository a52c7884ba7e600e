"""`video_folder`: a folder laid out like the MicroLens release, split leave-one-out by time.

  FOLDER/interactions.csv   header `user,item,timestamp` (ids are strings, timestamps integer
                            seconds; other columns are ignored)
  FOLDER/titles.csv         header `item,title`
  FOLDER/videos/<item>.<mp4|avi|flv|mkv|mov>

Arguments (`config.data.dataset`): `path` (the folder). Bad input is reported and loses
nothing else: rows with an empty id or a timestamp that is not an integer, and exact duplicate
rows, are counted, the first few named in the log, and skipped; an item without a title (or
without a row in titles.csv) keeps an empty title; an item whose video file is missing or empty
is named by item id and keeps its ID and title features (a truncated or undecodable file is
named when it is decoded, and is skipped the same way). A file whose header lacks the expected
columns is one `error:` line naming the file and the columns.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Iterator, Mapping

import numpy as np
from absl import logging

from vidrec_jax.config_checks import check
from vidrec_jax.data import tfds_logs
from vidrec_jax.data.datasets import DATASETS
from vidrec_jax.data.datasets import schema
from vidrec_jax.data.datasets.logs import LogSource
from vidrec_jax.data.datasets.logs import report
from vidrec_jax.data.datasets.logs import Rows

VIDEO_SUFFIXES = (".mp4", ".avi", ".flv", ".mkv", ".mov")
INTERACTIONS, TITLES, VIDEOS = "interactions.csv", "titles.csv", "videos"


def _rows(path: str, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
  """(line number, the values of `columns`) of every row of a CSV file with a header, streamed
  (the header checked before the first row)."""
  if not os.path.isfile(path):
    raise schema.DataError(f"{path} does not exist; expected a CSV file with the header "
                           f"{','.join(columns)}")
  with open(path, newline="", encoding="utf-8", errors="replace") as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in columns if c not in header]
    if missing:
      raise schema.DataError(f"{path}: columns {header} lack {', '.join(missing)}; expected a "
                             f"header with {','.join(columns)}")
    idx = [header.index(c) for c in columns]
    for n, row in enumerate(reader, start=2):
      yield n, [(row[i].strip() if i < len(row) else "") for i in idx]


def _videos(root: str) -> dict[str, str]:
  """item id -> its video file (the first suffix in VIDEO_SUFFIXES order wins)."""
  folder = os.path.join(root, VIDEOS)
  found: dict[str, str] = {}
  names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
  for suffix in VIDEO_SUFFIXES:
    for name in names:
      stem, ext = os.path.splitext(name)
      if ext.lower() == suffix and stem not in found:
        found[stem] = os.path.join(folder, name)
  return found


class VideoFolder(LogSource):
  """Interactions, titles and one video file per item, from a folder."""

  def validate(self, args: Mapping[str, Any]) -> None:
    super().validate(args)
    check(isinstance(args["path"], str) and bool(args["path"]), "data.dataset.path",
          args["path"], "the folder holding interactions.csv, titles.csv and videos/")

  def fingerprint(self, args):
    root = args["path"]
    out = {}
    for p in [os.path.join(root, INTERACTIONS), os.path.join(root, TITLES)] + sorted(
        _videos(root).values()):
      if os.path.exists(p):
        out[os.path.relpath(p, root)] = [os.path.getsize(p), int(os.path.getmtime(p))]
    return out

  def read(self, args) -> tfds_logs.LogTables:
    root = args["path"]
    if not os.path.isdir(root):
      raise schema.DataError(f"video folder {root} does not exist")
    inter = os.path.join(root, INTERACTIONS)
    rows = Rows()
    for n, (u, i, t) in _rows(inter, ("user", "item", "timestamp")):
      try:
        if not u or not i:
          raise ValueError
        ts = int(t)
      except ValueError:
        rows.bad.add(f"line {n} ({u!r}, {i!r}, {t!r})")
        continue
      rows.add(u, i, ts, n)
    report("rows with an empty id or a timestamp that is not an integer", inter, rows.bad)
    if not len(rows):
      raise schema.DataError(f"{inter} holds no valid interaction")
    users, items, times = rows.finish()
    report("duplicate rows", inter, rows.duplicates)
    del rows  # its parse buffers

    titles_path = os.path.join(root, TITLES)
    titles: dict[str, str] = {}
    no_title = []
    for n, (i, title) in _rows(titles_path, ("item", "title")):
      if not i:
        no_title.append(f"line {n} (no item id)")
      elif not title:
        no_title.append(f"line {n} (item {i})")
      else:
        titles.setdefault(i, title)
    report("title rows without an item id or a title", titles_path, no_title)
    untitled = sorted(set(items.vocab.tolist()) - set(titles))
    if untitled:
      logging.warning("%s: %d items have no title and keep an empty one (first: %s)",
                      titles_path, len(untitled), ", ".join(untitled[:5]))

    videos = _videos(root)
    ids = np.array(sorted(set(items.vocab.tolist()) | set(titles)))
    missing = [i for i in ids if i not in videos]
    empty = [i for i in ids if i in videos and os.path.getsize(videos[i]) == 0]
    for what, bad_items in (("no video file", missing), ("an empty video file", empty)):
      if bad_items:
        logging.warning("video folder %s: %d items have %s and keep their ID and title "
                        "features (first: %s)", root, len(bad_items), what,
                        ", ".join(bad_items[:5]))
    paths = np.array([videos.get(i, "") if i not in empty else "" for i in ids])
    return self.tables(args, ids, np.array([titles.get(i, "") for i in ids]),
                       np.full(len(ids), ""),
                       paths, users, items, times)


DATASETS.register("video_folder", VideoFolder())
