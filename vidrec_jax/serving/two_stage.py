"""Two-stage recommendation from a user tower, a ranker and the servable catalog: retrieval of
the nearest candidates by retrieval vector, then ranking by the heads' predictions fused with a
formula (fusion.py); and the printed line of a record. `--mode=recommend` (vidrec_jax/
recommend.py) and a loaded bundle (bundle.py) both answer through `answer` / `answer_many`
(several requests, one retrieval call), so both give the same videos in the same order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vidrec_jax.serving import fusion as fusion_lib
from vidrec_jax.serving import retrieval

# rows (1,), or history item vectors (1, L, H) and their mask (1, L) -> {'user', 'retrieval'}
UserFn = Callable[..., Mapping[str, Any]]
RankFn = Callable[[np.ndarray, np.ndarray], Mapping[str, Any]]  # (D,), (C, D) -> {head: (C,)}


@dataclasses.dataclass(frozen=True)
class Items:
  """The servable catalog, one row per video (not necessarily every catalog id)."""

  retrieval: Any  # (N, R) retrieval vectors: numpy, or a jax array laid out over a mesh
  ranking: np.ndarray  # (N, D) item vectors the ranker reads
  video_ids: np.ndarray  # (N,) int64 catalog ids
  titles: np.ndarray  # (N,) str
  content_types: np.ndarray  # (N,) str
  cold: np.ndarray  # (N,) bool: cold-start (published after the training period)

  def __len__(self) -> int:
    return len(self.video_ids)


@dataclasses.dataclass(frozen=True)
class Histories:
  """What a user tower that reads watch histories needs at serving time: every catalog video's
  vector as a history item, each known user's logged clicks, and the training popularity that
  orders the list of a user with no history at all."""

  vectors: np.ndarray  # (N, H) the history-item vector of every catalog id (row = video id)
  offsets: np.ndarray  # (U + 1,) int64: user row r's clicks are clicks[offsets[r]:offsets[r+1]]
  clicks: np.ndarray  # int64 video ids, each user's last `max_len` clicks in time order
  popularity: np.ndarray  # (N,) int64 training clicks of every catalog id
  max_len: int  # the longest history the tower reads (the most recent `max_len` clicks)

  @classmethod
  def from_rows(cls, rows, vectors: np.ndarray, popularity: np.ndarray,
                max_len: int) -> "Histories":
    """From each user row's clicks (video ids, time order); the row after the last one, the
    unknown users', has none."""
    clicks = np.concatenate(rows).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    offsets = np.r_[0, np.cumsum([len(r) for r in rows]), 0].astype(np.int64)
    offsets[-1] = offsets[-2]
    return cls(vectors=vectors, offsets=offsets, clicks=clicks,
               popularity=np.asarray(popularity, np.int64), max_len=max_len)

  def logged(self, row: int) -> np.ndarray:
    """The logged clicks (video ids, time order) of user row `row`."""
    return self.clicks[self.offsets[row]:self.offsets[row + 1]]

  def unknown(self, video_ids) -> list:
    """The entries of `video_ids` that are not catalog ids (empty when all are)."""
    n = len(self.vectors)
    return [v for v in video_ids
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n]

  def window(self, video_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (1, max_len, H), mask (1, max_len)): the last `max_len` videos of a history
    (time order, left-aligned and zero-padded, as the tower was trained)."""
    ids = np.asarray(video_ids, np.int64)[-self.max_len:]
    vec = np.zeros((1, self.max_len, self.vectors.shape[1]), np.float32)
    mask = np.zeros((1, self.max_len), np.float32)
    vec[0, :len(ids)] = self.vectors[ids]
    mask[0, :len(ids)] = 1.0
    return vec, mask


def unknown_user_note(user: str) -> str:
  """The note (stderr, JSON) for a user id outside the user vocabulary."""
  return (f"user {user!r} is not in the user vocabulary (not seen in training): these are the "
          "recommendations for the out-of-vocabulary (cold-start) user")


def _records(items: Items, idx: np.ndarray, order: np.ndarray, fused: np.ndarray,
             preds: Mapping[str, np.ndarray]) -> list[dict]:
  ids = items.video_ids[idx]
  return [dict(rank=r + 1, video_id=int(ids[j]), title=str(items.titles[idx[j]]),
               content_type=str(items.content_types[idx[j]]), score=float(fused[j]),
               scores={h: float(p[j]) for h, p in sorted(preds.items())},
               cold=bool(items.cold[idx[j]]))
          for r, j in enumerate(order)]


@dataclasses.dataclass
class _Plan:
  """One request before retrieval: its query and ranker, the item rows it must not list, or its
  records already (a user with nothing to go on)."""

  k: int
  query: np.ndarray | None = None
  rank: Callable[[np.ndarray], Mapping[str, Any]] | None = None
  drop: np.ndarray | None = None  # item rows never listed (the history's served videos)
  records: list[dict] | None = None


def _served_rows(items: Items, video_ids) -> np.ndarray:
  """The item rows of the served videos among `video_ids` (repeats kept; items.video_ids is
  ascending): a search per id, not a pass over the catalog."""
  ids = np.asarray(video_ids, np.int64).reshape(-1)
  if not len(ids) or not len(items):
    return np.zeros(0, np.int64)
  pos = np.minimum(np.searchsorted(items.video_ids, ids), len(items) - 1)
  return pos[items.video_ids[pos] == ids]


def user_query(user_fn: UserFn | None, items: Items, *, row: int | None = None,
               clicks: np.ndarray | None = None, histories: Histories | None = None,
               candidate_attention: bool = False) -> tuple[np.ndarray | None, Any]:
  """(the retrieval query (R,), what the ranker takes of the user) for an ID tower's `row` or
  a history tower's `clicks`; the query is None for a history with nothing to go on (empty;
  for din, no served video). The ranker's part: the user vector (D,), or for din the history's
  (vectors (L, H), mask (L,))."""
  if histories is None:
    u = user_fn(np.array([row], np.int32))
    return np.asarray(u["retrieval"], np.float32)[0], np.asarray(u["user"])[0]
  if not len(clicks):
    return None, None
  vec, mask = histories.window(clicks)
  if candidate_attention:
    return history_query(items, clicks), (vec[0], mask[0])
  u = user_fn(vec, mask)
  return np.asarray(u["retrieval"], np.float32)[0], np.asarray(u["user"])[0]


def _plan(user_fn, rank_fn, items: Items, k: int, row, clicks, histories: Histories | None,
          exclude_watched: bool, candidate_attention: bool) -> _Plan:
  query, user = user_query(user_fn, items, row=row, clicks=clicks, histories=histories,
                           candidate_attention=candidate_attention)
  exclude = clicks if histories is not None and exclude_watched else None
  if query is None:
    return _Plan(k, records=popular(histories, items, k, exclude))
  rank = ((lambda c: rank_fn(*user, c)) if candidate_attention
          else (lambda c: rank_fn(user, c)))
  return _Plan(k, query, rank, None if exclude is None else _served_rows(items, exclude))


def answer_many(user_fn: UserFn | None, rank_fn, items: Items, fuse: fusion_lib.Formula,
                candidates: int, requests: Sequence[Mapping[str, Any]], *,
                histories: Histories | None = None, exclude_watched: bool = False,
                candidate_attention: bool = False, retriever=None) -> list[list[dict]]:
  """The lists of several users at once (`answer` for each of `requests`: dicts of k and row or
  clicks), with one retrieval call for all of them: a batched search scans the catalog once
  for every query instead of once per query."""
  plans = [_plan(user_fn, rank_fn, items, r["k"], r.get("row"), r.get("clicks"), histories,
                 exclude_watched, candidate_attention) for r in requests]
  todo = [p for p in plans if p.records is None]
  if todo:
    extra = max(0 if p.drop is None else len(p.drop) for p in todo)
    retriever = retriever or retrieval.Exact(items.retrieval)
    found = retriever.search_batch(np.stack([p.query for p in todo]),
                                   min(candidates + extra, len(items)))
    for p, idx in zip(todo, found):
      p.records = _rank(p, np.asarray(idx), items, fuse, candidates)
  return [p.records for p in plans]


def answer(user_fn: UserFn | None, rank_fn, items: Items, fuse: fusion_lib.Formula, k: int,
           candidates: int, *, row: int | None = None, clicks: np.ndarray | None = None,
           histories: Histories | None = None, exclude_watched: bool = False,
           candidate_attention: bool = False, retriever=None) -> list[dict]:
  """The list of one user, for every kind of served user tower.

    ID tower (no `histories`): the user of vocabulary row `row`; user_fn(rows (1,)) gives
      {'user', 'retrieval'} and rank_fn(user (D,), candidates (C, D)) the heads.
    history tower: the history `clicks` (video ids, time order); user_fn(history vectors
      (1, L, H), mask (1, L)) gives {'user', 'retrieval'}, rank_fn as above.
    `candidate_attention` (din: the user vector depends on the candidate): retrieval searches
      with the mean retrieval vector of the history's served videos (item-to-item), and
      rank_fn(history vectors (L, H), mask (L,), candidates (C, D)) attends over the history
      once per candidate; user_fn is not used.
  A history with nothing to go on (empty; for din, no served video) gets `popular`; with
  `exclude_watched` the history's videos are never listed.
  """
  return answer_many(user_fn, rank_fn, items, fuse, candidates,
                     [dict(k=k, row=row, clicks=clicks)], histories=histories,
                     exclude_watched=exclude_watched, candidate_attention=candidate_attention,
                     retriever=retriever)[0]


def history_query(items: Items, clicks: np.ndarray) -> np.ndarray | None:
  """Item-to-item retrieval's query: the mean retrieval vector of the history's served videos
  (a video watched twice counts twice); None when none is served."""
  rows = _served_rows(items, clicks)
  if not len(rows):
    return None
  return np.asarray(items.retrieval[rows], np.float32).mean(0)


def _rank(plan: _Plan, idx: np.ndarray, items: Items, fuse: fusion_lib.Formula,
          candidates: int) -> list[dict]:
  """Stage 2 for one request: its retrieved rows (best first) without the dropped ones, the
  first `candidates` ranked by the heads, fused; the top k, ties broken by video id."""
  if plan.drop is not None and len(plan.drop):
    idx = idx[~np.isin(idx, plan.drop)]
  idx = idx[:candidates]
  preds = {h: np.asarray(v, np.float32) for h, v in
           plan.rank(_pad_rows(items.ranking[idx], candidates)).items()}
  preds = {h: v[:len(idx)] for h, v in preds.items()}
  fused = np.asarray(fuse(preds), np.float32)
  order = np.lexsort((items.video_ids[idx], -fused))[:plan.k]
  return _records(items, idx, order, fused, preds)


def recommend(query: np.ndarray, rank: Callable[[np.ndarray], Mapping[str, Any]],
              items: Items, fuse: fusion_lib.Formula, k: int, candidates: int,
              exclude: np.ndarray | None = None, retriever=None) -> list[dict]:
  """Two stages for one user: the `candidates` items nearest by retrieval vector, then the
  heads' predictions of those, fused; the top `k` by fused score, ties broken by video id.

  Args:
    query: the user's retrieval vector (R,).
    rank: candidate item vectors (C, D) -> {head: (C,)}, the user's ranker.
    items: the servable catalog.
    fuse: the compiled fusion formula.
    k: list length (at most `candidates`).
    candidates: how many items the ranker sees (at most len(items)).
    exclude: video ids never recommended (the user's watched videos); retrieval looks that
      many items further so that the ranker still sees `candidates` (fewer only when the
      catalog runs out).
    retriever: stage 1 (retrieval.py: exact, faiss, scann); default exact over
      `items.retrieval`.

  Returns:
    k records: rank (1-based), video_id, title, content_type, score (fused), scores (head ->
    prediction), cold.
  """
  plan = _Plan(k, np.asarray(query, np.float32), rank,
               None if exclude is None else _served_rows(items, exclude))
  extra = 0 if plan.drop is None else len(plan.drop)
  retriever = retriever or retrieval.Exact(items.retrieval)
  idx = np.asarray(retriever.search(plan.query, min(candidates + extra, len(items))))
  return _rank(plan, idx, items, fuse, candidates)


def _pad_rows(x: np.ndarray, n: int) -> np.ndarray:
  """`x` (C, D) padded with zero rows to (n, D): the exported ranker has one static shape."""
  x = np.asarray(x)
  if len(x) >= n:
    return x
  return np.concatenate([x, np.zeros((n - len(x),) + x.shape[1:], x.dtype)])


def popular(histories: Histories, items: Items, k: int, exclude: np.ndarray | None = None
            ) -> list[dict]:
  """The list of a user with no history at all: the `k` servable videos most clicked in
  training (ties by video id), scored by their click count (`scores`: {'popularity': ...})."""
  pop = histories.popularity[items.video_ids].astype(np.float64)
  keep = (np.ones(len(items), bool) if exclude is None or not len(exclude)
          else ~np.isin(items.video_ids, np.asarray(exclude, np.int64)))
  idx = np.flatnonzero(keep)
  order = np.lexsort((items.video_ids[idx], -pop[idx]))[:k]
  return _records(items, idx, order, pop[idx], {"popularity": pop[idx]})


def format_record(rec: Mapping[str, Any]) -> str:
  """One printed line of a record."""
  scores = "  ".join(f"{h} {v:.4f}" for h, v in rec["scores"].items())
  title = " ".join(str(rec["title"]).split())
  return (f"{rec['rank']:>3}  video {rec['video_id']:<6} {title:<32.32}  "
          f"{rec['content_type']:<8} score {rec['score']:.5f}  {scores}"
          f"{'  cold' if rec['cold'] else ''}")

