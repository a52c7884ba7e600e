"""The approximate retrieval indexes (retrieval.py builds, tunes and loads them): FAISS'
inverted-file index with exact inner products (`FaissIVF`), FAISS' HNSW graph over lifted vectors
(`FaissHNSW`), and ScaNN (`Scann`). Each searches one query or a batch, changes its probe count
(`with_probes`, what tuning sets), saves its files into the bundle and loads them back. faiss and
scann are imported only when an index is built or read.
"""

from __future__ import annotations

import os

import numpy as np

FAISS_FILE = "index.faiss"
SCANN_DIR = "scann"


class FaissIVF:
  """IndexIVFFlat (inner product): nlist k-means lists, nprobe scanned per query."""

  name = "faiss"

  def __init__(self, index, nprobe: int):
    import faiss  # pylint: disable=g-import-not-at-top
    self.index, self.nprobe = index, int(nprobe)
    # Per search, not on the shared index: retrievers of other probe counts share it, and
    # concurrent requests search it at once.
    self._params = faiss.SearchParametersIVF(nprobe=self.nprobe)

  @classmethod
  def build(cls, vectors: np.ndarray, seed: int) -> "FaissIVF":
    import faiss  # pylint: disable=g-import-not-at-top
    x = np.ascontiguousarray(vectors, np.float32)
    n, d = x.shape
    nlist = int(max(1, min(4 * np.sqrt(n), n // 39)))  # >= 39 training points per list
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.max_points_per_centroid = 64  # k-means on a sample: 64 points a list
    index.train(x)
    index.add(x)
    return cls(index, 1)

  @property
  def probes(self) -> int:
    return self.index.nlist

  def with_probes(self, p: int) -> "FaissIVF":
    return FaissIVF(self.index, p)

  def search(self, query: np.ndarray, n: int) -> np.ndarray:
    _, rows = self.index.search(np.ascontiguousarray(query[None], np.float32), n,
                                params=self._params)
    return rows[0][rows[0] >= 0]

  def search_batch(self, queries: np.ndarray, n: int) -> list[np.ndarray]:
    _, rows = self.index.search(np.ascontiguousarray(queries, np.float32), n,
                                params=self._params)
    return [r[r >= 0] for r in rows]

  def save(self, directory: str) -> tuple[str, ...]:
    import faiss  # pylint: disable=g-import-not-at-top
    faiss.write_index(self.index, os.path.join(directory, FAISS_FILE))
    return (FAISS_FILE,)

  @classmethod
  def load(cls, directory: str, params: dict) -> "FaissIVF":
    import faiss  # pylint: disable=g-import-not-at-top
    return cls(faiss.read_index(os.path.join(directory, FAISS_FILE)), params["nprobe"])

  def params(self) -> dict:
    return {"nprobe": self.nprobe, "nlist": int(self.index.nlist)}


class FaissHNSW:
  """A FAISS HNSW graph (IndexHNSWFlat, M links a node) over the vectors lifted to Euclidean
  nearest-neighbour search: each item x gains the coordinate sqrt(max|x|^2 - |x|^2), a query q
  the coordinate 0, so |q - x|^2 = |q|^2 + max|x|^2 - 2 q.x orders items by inner product
  exactly (Bachrach et al., 2014); `ef_search` candidates are kept per query."""

  name = "faiss_hnsw"
  M = 32
  MAX_EF = 4096

  def __init__(self, index, ef_search: int):
    import faiss  # pylint: disable=g-import-not-at-top
    self.index, self.ef = index, int(ef_search)
    self._params = faiss.SearchParametersHNSW(efSearch=self.ef)

  @classmethod
  def build(cls, vectors: np.ndarray, seed: int) -> "FaissHNSW":
    import faiss  # pylint: disable=g-import-not-at-top
    del seed  # insertion order is the catalog's: deterministic
    x = np.ascontiguousarray(vectors, np.float32)
    norms = (x * x).sum(1)
    lifted = np.concatenate([x, np.sqrt(np.maximum(norms.max() - norms, 0))[:, None]], 1)
    index = faiss.IndexHNSWFlat(x.shape[1] + 1, cls.M)
    index.hnsw.efConstruction = 80
    index.add(np.ascontiguousarray(lifted, np.float32))
    return cls(index, 16)

  @property
  def probes(self) -> int:
    return max(self.MAX_EF, 16)

  def with_probes(self, p: int) -> "FaissHNSW":
    return FaissHNSW(self.index, p)

  def search_batch(self, queries: np.ndarray, n: int) -> list[np.ndarray]:
    q = np.asarray(queries, np.float32).reshape(-1, self.index.d - 1)
    q = np.ascontiguousarray(np.concatenate([q, np.zeros((len(q), 1), np.float32)], 1))
    _, rows = self.index.search(q, n, params=faiss_params(self._params, max(n, self.ef)))
    return [r[r >= 0] for r in rows]

  def search(self, query: np.ndarray, n: int) -> np.ndarray:
    return self.search_batch(query[None], n)[0]

  save = FaissIVF.save

  @classmethod
  def load(cls, directory: str, params: dict) -> "FaissHNSW":
    import faiss  # pylint: disable=g-import-not-at-top
    return cls(faiss.read_index(os.path.join(directory, FAISS_FILE)), params["ef_search"])

  def params(self) -> dict:
    return {"ef_search": self.ef, "M": self.M}


def faiss_params(params, ef: int):
  """HNSW search parameters with efSearch at least the neighbours asked for."""
  if params.efSearch >= ef:
    return params
  import faiss  # pylint: disable=g-import-not-at-top
  return faiss.SearchParametersHNSW(efSearch=ef)


class Scann:
  """A ScaNN tree (num_leaves partitions), anisotropic quantisation, exact re-ranking of the
  best `reorder` candidates; leaves_to_search partitions scanned per query.

  Both are set per search, so tuning chooses both (`depths`, `cost`): the re-ranking depth
  bounds the recall whatever the leaves (1,000 stopped at 0.941 at a million items with every
  leaf searched: benchmarks/results/serving.md), and a deeper one reaches the target with fewer
  leaves scanned, for less work a query."""

  name = "scann"
  depths = (1000, 2000, 4000)  # re-ranking depths tuning tries

  def __init__(self, searcher, leaves_to_search: int, num_leaves: int, reorder: int):
    self.searcher, self.leaves = searcher, int(leaves_to_search)
    self.num_leaves, self.reorder = int(num_leaves), int(reorder)

  @classmethod
  def build(cls, vectors: np.ndarray, seed: int, reorder: int = 1000) -> "Scann":
    """The index of `vectors`, the same for the same vectors and seed. ScaNN's builder takes
    no seed, so the seed goes into its config's k-means fields (the tree's and the quantiser's
    clustering and sampling seeds), the tree's centres start from k-means++, which follows
    that seed (its default random start does not), and training runs on one thread (on
    several, the outcome depended on how the threads were scheduled): without any one of
    these, two builds of one seed differed in most rows (tests/serving_retrieval_test.py)."""
    from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
    from scann.proto import scann_pb2  # pylint: disable=g-import-not-at-top
    from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
    x = np.ascontiguousarray(vectors, np.float32)
    n = len(x)
    leaves = int(max(1, min(2 * np.sqrt(n), n // 20)))
    reorder = min(reorder, n)
    b = scann_ops_pybind.builder(x, min(100, n), "dot_product")
    if leaves > 1:
      b = b.tree(num_leaves=leaves, num_leaves_to_search=1,
                 training_sample_size=min(n, 250_000), random_init=False)
    b = b.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(reorder)
    config = text_format.Parse(b.create_config(), scann_pb2.ScannConfig())
    s = int(seed) + 1  # 0 is ScaNN's "no seed given"
    if config.HasField("partitioning"):
      config.partitioning.clustering_seed = s
    ah = config.hash.asymmetric_hash
    ah.clustering_seed, ah.sampling_seed = s, s
    searcher = scann_ops_pybind.create_searcher(x, text_format.MessageToString(config), 1)
    return cls(searcher, 1, leaves, reorder)

  @property
  def probes(self) -> int:
    return self.num_leaves

  def with_probes(self, p: int) -> "Scann":
    return Scann(self.searcher, p, self.num_leaves, self.reorder)

  def with_depth(self, depth: int) -> "Scann":
    return Scann(self.searcher, self.leaves, self.num_leaves, depth)

  def cost(self, n: int, dim: int) -> float:
    """Estimated work of a query over `n` items (multiply-adds): the quantised scores of the
    scanned leaves' items (a lookup per 2 dimensions) and the exact re-ranking."""
    return self.leaves / self.num_leaves * n * dim / 2 + self.reorder * dim

  def search(self, query: np.ndarray, n: int) -> np.ndarray:
    return self.search_batch(np.asarray(query, np.float32)[None], n)[0]

  def search_batch(self, queries: np.ndarray, n: int) -> list[np.ndarray]:
    kw = dict(leaves_to_search=self.leaves) if self.num_leaves > 1 else {}
    rows, _ = self.searcher.search_batched(np.asarray(queries, np.float32),
                                           final_num_neighbors=n,
                                           pre_reorder_num_neighbors=max(n, self.reorder), **kw)
    return [np.asarray(r, np.int64) for r in rows]

  def save(self, directory: str) -> tuple[str, ...]:
    path = os.path.join(directory, SCANN_DIR)
    os.makedirs(path, exist_ok=True)
    self.searcher.serialize(path, relative_path=True)
    return tuple(os.path.join(SCANN_DIR, f) for f in sorted(os.listdir(path)))

  @classmethod
  def load(cls, directory: str, params: dict) -> "Scann":
    from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
    searcher = scann_ops_pybind.load_searcher(os.path.join(directory, SCANN_DIR))
    return cls(searcher, params["leaves_to_search"], params["num_leaves"], params["reorder"])

  def params(self) -> dict:
    return {"leaves_to_search": self.leaves, "num_leaves": self.num_leaves,
            "reorder": self.reorder}
