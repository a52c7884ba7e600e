"""Stage 1 of serving, retrieval: the catalog rows whose retrieval vectors have the largest dot
product with a user's, exact or from an approximate index built at export.

  exact  jax.lax.top_k over every vector (on the device; over the mesh in --mode=recommend)
  faiss       a FAISS inverted-file index with exact inner products inside the probed lists
              (IndexIVFFlat): `nprobe` of its `nlist` k-means lists are scanned
  faiss_hnsw  a FAISS HNSW graph (IndexHNSWFlat) over the vectors lifted so that Euclidean
              nearest neighbours are the largest inner products; `ef_search` kept per query
              (measured the slowest and least accurate here: benchmarks/results/serving.md)
  scann  a ScaNN tree of `num_leaves` partitions with anisotropic quantisation and exact
         re-ranking of the best candidates: `leaves_to_search` partitions are scanned

An index is tuned when it is built: its probe count (nprobe, leaves_to_search) doubles until the
mean recall@n against exact search reaches `target` on one sample of users' query vectors, then
bisects down to the fewest that reach it (ScaNN: at each of its re-ranking depths, keeping the
depth and leaves of least estimated work a query among those that reach it), and its recall is
then measured on another sample that tuning never saw (held out); both figures
and the build time go in the manifest (`report`). faiss and scann are imported only when their
index is built or read.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import numpy as np

from vidrec_jax.serving import ann

RETRIEVALS = ("exact", "faiss", "faiss_hnsw", "scann")
# "auto" (recommend.retrieval's default): exact up to this many items, ScaNN above (measured by
# benchmarks/serving.py: at 20,000 items exact search served 757 requests/s at 16 clients
# against ScaNN's 959 at recall@100 0.95; at 100,000, 312 against 661).
AUTO_EXACT_MAX = 50_000


def _top(scores: np.ndarray, n: int) -> np.ndarray:
  """Rows of the `n` largest scores, best first (ties by row)."""
  part = np.argpartition(-scores, min(n, len(scores) - 1))[:n]
  return part[np.lexsort((part, -scores[part]))]


@functools.partial(jax.jit, static_argnames="n")
def top_candidates(user: jax.Array, items: jax.Array, n: int) -> jax.Array:
  """Rows of the `n` items (N, R) with the largest dot product with `user` (R,), best first."""
  return jax.lax.top_k(items @ user, n)[1]


@functools.partial(jax.jit, static_argnames="n")
def _batch_top(queries: jax.Array, items: jax.Array, n: int) -> jax.Array:
  return jax.lax.top_k(queries @ items.T, n)[1]


class Exact:
  """Every vector scored: the reference the indexes are measured against."""

  name = "exact"

  def __init__(self, vectors):
    # On the device once (a jax array laid out over a mesh stays as it is): a numpy array
    # would be copied to the device by every search.
    self.vectors = vectors if isinstance(vectors, jax.Array) else jax.device_put(vectors)

  def search(self, query: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(top_candidates(query, self.vectors, n))

  def search_batch(self, queries: np.ndarray, n: int) -> list[np.ndarray]:
    """One pass over the catalog for every query: (B, R) queries padded to a power of two
    rows (a few compiled shapes)."""
    q = np.asarray(queries, np.float32)
    b = 1 << max(0, (len(q) - 1).bit_length())
    if b != len(q):
      q = np.concatenate([q, np.zeros((b - len(q), q.shape[1]), np.float32)])
    rows = np.asarray(_batch_top(q, self.vectors, n))
    return list(rows[:len(queries)])

  def files(self) -> tuple[str, ...]:
    return ()

  def params(self) -> dict:
    return {}


def exact_top(vectors: np.ndarray, queries: np.ndarray, n: int) -> np.ndarray:
  """(Q, n) exact top-n rows of every query (numpy, in blocks of queries)."""
  out = []
  for a in range(0, len(queries), 32):  # 32 x N scores at a time (128 MB at a million)
    s = queries[a:a + 32] @ vectors.T
    out.extend(_top(row, n) for row in s)
  return np.stack(out) if out else np.zeros((0, n), np.int64)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
  """Mean share of each query's true top-n rows that were found."""
  if not len(truth):
    return float("nan")
  return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


INDEXES = {"faiss": ann.FaissIVF, "faiss_hnsw": ann.FaissHNSW, "scann": ann.Scann}


def build(name: str, vectors: np.ndarray, tune: np.ndarray, held_out: np.ndarray, n: int,
          target: float, seed: int = 0):
  """(the retriever, its report) of `name` over `vectors`: an index tuned on the `tune` queries
  to mean recall@n >= `target` (or its largest probe count) and measured on `held_out`."""
  if name not in RETRIEVALS:
    raise ValueError(f"retrieval {name!r} is not allowed; allowed: {', '.join(RETRIEVALS)}")
  n = min(n, len(vectors))
  if name == "exact":
    return Exact(vectors), {"name": "exact", f"recall@{n}": 1.0}
  t = time.perf_counter()
  built = INDEXES[name].build(vectors, seed)
  build_s = time.perf_counter() - t
  truth_tune = exact_top(vectors, tune, n)
  # An index with a second knob (ScaNN's re-ranking depth) is tuned at each of its `depths`;
  # of those that meet the target the one of least estimated work a query is kept, else the one
  # of best recall.
  depths = getattr(built, "depths", ())
  if depths:
    options = [tune_probes(built.with_depth(d), tune, truth_tune, n, target) for d in depths]
    met = [o for o in options if o[1] >= target]
    index, r = (min(met, key=lambda o: o[0].cost(len(vectors), vectors.shape[1])) if met
                else max(options, key=lambda o: o[1]))
  else:
    index, r = tune_probes(built, tune, truth_tune, n, target)
  held = recall(index.search_batch(held_out, n), exact_top(vectors, held_out, n))
  report = {"name": name, **index.params(), f"recall@{n}": held, f"tune_recall@{n}": r,
            "target": target, "tune_queries": len(tune), "held_out_queries": len(held_out),
            "build_seconds": round(build_s, 3)}
  return index, report


def tune_probes(index, tune: np.ndarray, truth: np.ndarray, n: int, target: float):
  """(index with the fewest probes whose mean recall@n on `tune` meets `target`, else with
  them all; that recall): probes double until the target is met, then bisect down."""
  def tuned(p: int) -> float:
    return recall(index.with_probes(p).search_batch(tune, n), truth) if len(tune) else 1.0
  p, r = 1, tuned(1)
  while r < target and p < index.probes:
    p = min(2 * p, index.probes)
    r = tuned(p)
  lo = p // 2  # misses the target (or 0)
  while p - lo > 1:
    mid = (lo + p) // 2
    r_mid = tuned(mid)
    if r_mid >= target:
      p, r = mid, r_mid
    else:
      lo = mid
  return index.with_probes(p), r


def resolve(name: str, num_items: int) -> str:
  """recommend.retrieval's choice for a catalog of `num_items`: 'auto' is exact up to
  AUTO_EXACT_MAX items, else scann (exact, with a warning, where scann is not installed)."""
  if name != "auto":
    return name
  if num_items <= AUTO_EXACT_MAX:
    return "exact"
  import importlib.util  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("scann") is None:
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.warning("retrieval 'auto': %d items would use scann, which is not installed (pip "
                    "install -e '.[ann]'); searching exactly", num_items)
    return "exact"
  return "scann"


def load(name: str, directory: str, vectors, params: dict[str, Any]):
  """The retriever a bundle's manifest names (`exact` reads nothing: the retrieval vectors)."""
  if name == "exact":
    return Exact(vectors)
  if name not in INDEXES:
    raise ValueError(f"retrieval {name!r} is not allowed; allowed: {', '.join(RETRIEVALS)}")
  return INDEXES[name].load(directory, params)
