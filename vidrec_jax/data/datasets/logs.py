"""Datasets of logged interactions (MovieLens, a folder of videos + logs): cleaned into dense ids,
split leave-one-out by time, written once as TFDS ArrayRecord (data/tfds_logs.py), read into
the dataset schema.

The split is RecBole's and MicroLens': each user's interactions in time order (ties in input
order), the last one is the test interaction, the second last the valid one, the rest train (a
user with two interactions has no valid one, with one only a train one). Every interaction is a
positive (implicit feedback). An item's publish time is given by the source or is its first
interaction; an item published after the last training interaction is cold-start.

Filtering, as arguments of every log dataset (`config.data.dataset`), before the split:
`min_interactions` drops users with fewer interactions, then `keep_last` keeps each user's last
ones (0: off). RecBole's protocol for ML-100K is 0 and 0; MicroLens' is 5 and 13.
"""

from __future__ import annotations

import abc
import array
import dataclasses
import json
from typing import Any, Mapping

import numpy as np
from absl import logging

from vidrec_jax.config_checks import check
from vidrec_jax.data import build
from vidrec_jax.data import tfds_logs
from vidrec_jax.data.datasets import DatasetSource
from vidrec_jax.data.datasets import schema

STAMP = "dataset_stamp.json"
FILTER_OFF = {"min_interactions": 0, "keep_last": 0}  # the filtering arguments, switched off


def leave_one_out(user: np.ndarray) -> np.ndarray:
  """The split (0 train, 1 valid, 2 test) of each interaction of a chronologically ordered log.

  Args:
    user: (n,) the user of each interaction, the interactions in time order.
  """
  user = np.asarray(user)
  n = len(user)
  order = np.lexsort((np.arange(n), user))  # grouped by user, in time order within a user
  u = user[order]
  starts = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1] if n else np.zeros(0, np.int64)
  counts = np.diff(np.r_[starts, n])
  count = np.repeat(counts, counts)
  from_end = count - 1 - (np.arange(n) - np.repeat(starts, counts))
  split = np.zeros(n, np.int64)
  split[order] = np.where((from_end == 0) & (count >= 2), 2,
                          np.where((from_end == 1) & (count >= 3), 1, 0))
  return split


def dense_ids(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(sorted unique raw ids, the dense id of each entry); ids that are all integers sort as
  numbers, others as strings."""
  raw = np.asarray(raw)
  uniq, inverse = np.unique(raw.astype(str) if raw.size else np.zeros(0, str),
                            return_inverse=True)
  if uniq.size and all(r.lstrip("-").isdigit() for r in uniq):
    order = np.argsort(uniq.astype(np.int64), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    uniq, inverse = uniq[order], rank[inverse]
  return uniq, inverse.reshape(-1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Coded:
  """Raw ids by code: row i's raw id is `vocab[codes[i]]`. A reader keeps each distinct id once
  and a row as an int64, instead of a Python string a row."""
  vocab: np.ndarray  # (v,) str: the distinct raw ids
  codes: np.ndarray  # (n,) int64

  @classmethod
  def of(cls, raw: Any) -> Coded:
    """`raw` itself when coded already, else its distinct ids and each row's code."""
    if isinstance(raw, Coded):
      return raw
    vocab, codes = np.unique(np.asarray(raw).astype(str), return_inverse=True)
    return cls(vocab, codes.reshape(-1).astype(np.int64))

  def dense(self, keep: np.ndarray, item_raw: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """`dense_ids` of the kept rows' raw ids (with the `item_raw` table first, when given):
    (sorted unique raw ids, the dense id of each kept row)."""
    codes = self.codes[keep]
    present = np.unique(codes)
    extra = np.zeros(0, str) if item_raw is None else np.asarray(item_raw).astype(str)
    uniq, dense = dense_ids(np.concatenate([extra, self.vocab[present]]))
    lookup = np.zeros(len(self.vocab), np.int64)
    lookup[present] = dense[len(extra):]
    return uniq, lookup[codes]


class Skipped:
  """Bad entries of a file, counted, the first `limit` named: a corrupt file's millions of bad
  rows are not all kept."""

  def __init__(self, limit: int = 5):
    self.count, self.names, self.limit = 0, [], limit

  def add(self, name: str) -> None:
    self.count += 1
    if len(self.names) < self.limit:
      self.names.append(name)

  def extend(self, names: list[str], count: int) -> None:
    """Adds `count` entries, of which `names` are the first."""
    self.count += count
    self.names += names[:max(0, self.limit - len(self.names))]

  def __len__(self) -> int:
    return self.count


def report(what: str, where: str, bad: list[str] | Skipped, limit: int = 5) -> None:
  """Logs how many `bad` entries were skipped, naming the first few."""
  if len(bad):
    names = bad.names if isinstance(bad, Skipped) else bad
    logging.warning("%s: %d %s skipped (first: %s)", where, len(bad), what,
                    "; ".join(names[:limit]))


class Rows:
  """Interaction rows as a reader parses them, kept as codes (`Coded`: each distinct user and
  item id once, a row as three int64s and its line number: 32 bytes a row, where Python tuples
  in a duplicate-check set take ~400 bytes a row measured, benchmarks/log_read.py). `finish`
  drops exact duplicate rows, the first occurrence in file order kept, and counts and names them
  in `duplicates` beside those the reader found itself (e.g. a user's sequence given twice)."""

  def __init__(self):
    self.users: dict[str, int] = {}
    self.items: dict[str, int] = {}
    self._cols = {k: array.array("q") for k in ("user", "item", "time", "line")}
    self.bad, self.duplicates = Skipped(), Skipped()

  def add(self, user: str, item: str, time: int, line: int) -> None:
    c = self._cols
    c["user"].append(self.users.setdefault(user, len(self.users)))
    c["item"].append(self.items.setdefault(item, len(self.items)))
    c["time"].append(time)
    c["line"].append(line)

  def __len__(self) -> int:
    return len(self._cols["line"])

  def finish(self) -> tuple[Coded, Coded, np.ndarray]:
    """(users, items, times) of the rows without exact duplicates (added to `duplicates`)."""
    u, i, t, line = (np.frombuffer(self._cols[k], np.int64) if len(self) else
                     np.zeros(0, np.int64) for k in ("user", "item", "time", "line"))
    order = np.lexsort((line, t, i, u))  # equal rows together, the first in the file first
    repeat = np.ones(len(order), bool)
    for col in (u, i, t):
      s = col[order]
      repeat[1:] &= s[1:] == s[:-1]
    repeat[:1] = False
    dup = np.zeros(len(order), bool)
    dup[order[repeat]] = True
    users, items = (np.array(list(v), dtype=str) for v in (self.users, self.items))
    self.duplicates.extend([f"line {line[r]} ({users[u[r]]}, {items[i[r]]}, {t[r]})"
                            for r in np.flatnonzero(dup)[:self.duplicates.limit]],
                           int(dup.sum()))
    keep = ~dup
    return Coded(users, u[keep]), Coded(items, i[keep]), t[keep]


def user_filter(user: np.ndarray, time: np.ndarray, min_interactions: int, keep_last: int
                ) -> np.ndarray:
  """Which rows stay: those of users with at least `min_interactions` rows, and of each such
  user the last `keep_last` by time (ties in input order); 0 turns either off."""
  user, n = np.asarray(user), len(user)
  _, inverse, counts = np.unique(user, return_inverse=True, return_counts=True)
  keep = counts[inverse] >= min_interactions
  if keep_last > 0 and n:
    order = np.lexsort((np.arange(n), np.asarray(time), inverse))  # by user, then time
    starts = np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]
    sizes = np.diff(np.r_[starts, n])
    from_end = np.repeat(sizes, sizes) - 1 - (np.arange(n) - np.repeat(starts, sizes))
    last = np.zeros(n, bool)
    last[order] = from_end < keep_last
    keep &= last
  return keep


class LogSource(DatasetSource):
  """A dataset read from logs: subclasses read their files into `LogTables` (through `tables`,
  which applies the filtering arguments)."""

  label_columns: tuple[str, ...] = ()
  splits = tfds_logs.SPLITS
  content_type = "video"
  arguments = {"path": "", **FILTER_OFF}

  def validate(self, args: Mapping[str, Any]) -> None:
    for f in ("min_interactions", "keep_last"):
      check(f in args, f"data.dataset.{f}", None, "every log dataset sets it (0: off; "
            "MicroLens' protocol: min_interactions=5, keep_last=13)")
      value = args[f]
      check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            f"data.dataset.{f}", value, "an integer >= 0 (0: off)")

  @abc.abstractmethod
  def read(self, args: Mapping[str, Any]) -> tfds_logs.LogTables:
    """The cleaned log of the source files (bad rows reported and skipped)."""

  @abc.abstractmethod
  def fingerprint(self, args: Mapping[str, Any]) -> dict:
    """What identifies the source files (paths, sizes, modification times)."""

  def tables(self, args: Mapping[str, Any], item_raw: np.ndarray, title: np.ndarray,
             genres: np.ndarray, path: np.ndarray, user_rows: np.ndarray | Coded,
             item_rows: np.ndarray | Coded, time_rows: np.ndarray) -> tfds_logs.LogTables:
    """Dense ids, chronological order and the split, from cleaned rows (raw ids, or `Coded`
    from `Rows`) and the item table (raw ids with their metadata), after the filtering of
    `args` (`user_filter`)."""
    user_rows, item_rows = Coded.of(user_rows), Coded.of(item_rows)
    time_rows = np.asarray(time_rows, np.int64)
    keep = user_filter(user_rows.codes, time_rows, args["min_interactions"],
                       args["keep_last"])
    if not keep.all():
      logging.info("filtering (min_interactions=%d, keep_last=%d) keeps %d of %d interactions",
                   args["min_interactions"], args["keep_last"], int(keep.sum()), len(keep))
    if not keep.any():
      raise schema.DataError("no interaction is left after the filtering "
                             f"(min_interactions={args['min_interactions']})")
    items, item = item_rows.dense(keep, item_raw)
    meta = {str(r): (t, g, p) for r, t, g, p in zip(item_raw, title, genres, path)}
    users, user = user_rows.dense(keep)
    time_rows = time_rows[keep]
    order = np.argsort(time_rows, kind="stable")
    user, item, ts = user[order], item[order], time_rows[order]
    first_seen = np.full(len(items), ts.max() + 1 if len(ts) else 0, np.int64)
    np.minimum.at(first_seen, item, ts)
    cols = [meta.get(str(r), ("", "", "")) for r in items]
    return tfds_logs.LogTables(
        user_raw=users, item_raw=items, title=np.array([c[0] for c in cols]),
        content_type=np.full(len(items), self.content_type), genres=np.array([c[1] for c in cols]),
        path=np.array([c[2] for c in cols]), publish_time=first_seen, user=user, item=item,
        timestamp=ts, split=leave_one_out(user))

  def record_defaults(self) -> dict[str, Any]:
    return {f"data.dataset.{k}": v for k, v in FILTER_OFF.items()}

  def _stamp(self, args: Mapping[str, Any]) -> dict:
    # Filtering arguments at their off value are left out: a dataset built before they existed
    # (the same records) is reused.
    kept = {k: v for k, v in dict(args).items() if not (k in FILTER_OFF and v == FILTER_OFF[k])}
    return json.loads(json.dumps({"args": kept, "source": self.fingerprint(args),
                                  "format": tfds_logs.VERSION}))

  def prepare(self, data_dir: str, args: Mapping[str, Any]) -> None:
    """Builds the records once into `data_dir` (data/build.py: reused when built from the same
    arguments and source files, refused in one line when built from others, never
    overwritten)."""
    build.build_once(data_dir, STAMP, self._stamp(args), lambda d: self._write(d, args),
                     {"args.": "data.dataset.", "source": "source files",
                      "format": "record format"})

  def _write(self, data_dir: str, args: Mapping[str, Any]) -> None:
    t = self.read(args)
    tfds_logs.write(data_dir, t)
    n = np.bincount(t.split, minlength=3)
    logging.info("%s: %d users, %d items, interactions train/valid/test = %d/%d/%d",
                 args["name"], len(t.user_raw), len(t.item_raw), n[0], n[1], n[2])

  def load(self, data_dir: str, args: Mapping[str, Any]) -> schema.RecDataset:
    splits = {s: tfds_logs.open_split(data_dir, "interactions", s) for s in self.splits}
    cols = tfds_logs.open_split(data_dir, "videos", "catalog").columns
    users = tfds_logs.open_split(data_dir, "users", "users").columns
    order = np.argsort(cols["video_id"])

    def text(k):
      return schema.strings(cols[k][order])

    train_ts = splits["train"].columns.get("timestamp", np.zeros(0))
    train_end = float(train_ts.max() + 1) if len(train_ts) else 0.0
    publish = cols["publish_time"][order].astype(np.float64)
    paths = text("path")
    catalog = schema.Catalog(
        paths=paths, title=text("title"), content_type=text("content_type"),
        publish_time=publish, cold=schema.cold_start(publish, train_end),
        extra={"raw_id": text("raw_id"), "genres": text("genres")})
    user_order = np.argsort(users["user_id"])
    return schema.RecDataset(
        name=args["name"], catalog=catalog, splits=splits, label_columns=self.label_columns,
        capabilities=frozenset({schema.VIDEO_FILES} if any(paths) else ()),
        train_end=train_end,
        users=schema.strings(users["raw_id"][user_order]))
