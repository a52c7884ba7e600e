"""Two-stage recommendation from a user tower, a ranker and the servable catalog: retrieval of
the nearest candidates by retrieval vector, then ranking by the heads' predictions fused with a
formula (fusion.py); and the printed line of a record. `--mode=recommend` (vidrec_jax/
recommend.py) and a loaded bundle (bundle.py) both answer through `recommend`, so both give the
same videos in the same order.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import numpy as np

from vidrec_jax.serving import fusion as fusion_lib

UserFn = Callable[[np.ndarray], Mapping[str, Any]]  # rows (1,) -> {'user', 'retrieval'}
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


@functools.partial(jax.jit, static_argnames="n")
def top_candidates(user: jax.Array, items: jax.Array, n: int) -> jax.Array:
  """Rows of the `n` items (N, R) with the largest dot product with `user` (R,), best first."""
  return jax.lax.top_k(items @ user, n)[1]


def unknown_user_note(user: str) -> str:
  """The note (stderr, JSON) for a user id outside the user vocabulary."""
  return (f"user {user!r} is not in the user vocabulary (not seen in training): these are the "
          "recommendations for the out-of-vocabulary (cold-start) user")


def recommend(user_fn: UserFn, rank_fn: RankFn, row: int, items: Items,
              fuse: fusion_lib.Formula, k: int, candidates: int) -> list[dict]:
  """Two stages for the user of vocabulary row `row`: the `candidates` items nearest by
  retrieval vector, then the heads' predictions of those, fused; the top `k` by fused score,
  ties broken by video id.

  Args:
    user_fn: rows (1,) -> {'user': (1, D), 'retrieval': (1, R)}.
    rank_fn: user vector (D,), candidate item vectors (C, D) -> {head: (C,)}.
    row: the user's vocabulary row (the OOV row for an unknown user).
    items: the servable catalog.
    fuse: the compiled fusion formula.
    k: list length (at most `candidates`).
    candidates: how many items the ranker sees (at most len(items)).

  Returns:
    k records: rank (1-based), video_id, title, content_type, score (fused), scores (head ->
    prediction), cold.
  """
  user = user_fn(np.array([row], np.int32))
  # A host vector: the items may be laid out over a mesh, the user's vector is not.
  idx = np.asarray(top_candidates(np.asarray(user["retrieval"])[0], items.retrieval,
                                  candidates))
  preds = {h: np.asarray(v, np.float32) for h, v in
           rank_fn(np.asarray(user["user"])[0], items.ranking[idx]).items()}
  fused = np.asarray(fuse(preds), np.float32)
  ids = items.video_ids[idx]
  order = np.lexsort((ids, -fused))[:k]
  return [dict(rank=r + 1, video_id=int(ids[j]), title=str(items.titles[idx[j]]),
               content_type=str(items.content_types[idx[j]]), score=float(fused[j]),
               scores={h: float(p[j]) for h, p in sorted(preds.items())},
               cold=bool(items.cold[idx[j]]))
          for r, j in enumerate(order)]


def format_record(rec: Mapping[str, Any]) -> str:
  """One printed line of a record."""
  scores = "  ".join(f"{h} {v:.4f}" for h, v in rec["scores"].items())
  title = " ".join(str(rec["title"]).split())
  return (f"{rec['rank']:>3}  video {rec['video_id']:<6} {title:<32.32}  "
          f"{rec['content_type']:<8} score {rec['score']:.5f}  {scores}"
          f"{'  cold' if rec['cold'] else ''}")

