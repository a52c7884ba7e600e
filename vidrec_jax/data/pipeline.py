"""Grain input pipelines: impressions + clips, sharded per JAX process.

Training stream: the train split's impressions grouped by video (data/grouping.py) -> per-epoch
shuffle -> repeat -> this process's slice of each global batch -> clip sampling, title inputs,
labels -> batch -> worker processes (each builds whole batches). The slice is taken from the
global example order, so the global batch at step s holds the same examples whatever the number
of processes, and per-example randomness is seeded by the global example index for the same
reason: batch i is a pure function of i, and resuming at a step needs no iterator state.

What an example holds is declared by the model (`InputSpec`, data/inputs.py): the clip inputs
of its encoder, title inputs, a second view for tasks that need one, and the per-impression
columns of its heads.
"""

from __future__ import annotations

import contextlib
import dataclasses

import grain
import numpy as np
import threadpoolctl

from vidrec_jax.data.clips import ClipSampler
from vidrec_jax.data.datasets import DataError
from vidrec_jax.data.datasets import Split
from vidrec_jax.data.grouping import GlobalBatchSlice
from vidrec_jax.data.grouping import GroupedSource
from vidrec_jax.data.grouping import group_by_clip
from vidrec_jax.data.inputs import InputSpec
from vidrec_jax.data.sequences import ClickHistory
from vidrec_jax.data.titles import TitleInputs
from vidrec_jax.data.vocab import Vocab


@dataclasses.dataclass(frozen=True)
class LoaderOptions:
  """How a pipeline reads: worker processes (0: in this process), read threads, batches read
  ahead. None of them changes what the stream holds (tested)."""

  num_workers: int
  read_threads: int
  prefetch_batches: int


class VideoInputs:
  """video id -> the item tower's per-video inputs other than frames: the title inputs
  (`titles`), the content-type row (`content_type`, from `type_rows` indexed by video id) and
  the length in seconds (`duration`, from `durations`), and each of `features` (name ->
  per-video array indexed by video id) under its name."""

  def __init__(self, titles: TitleInputs | None, type_rows: np.ndarray | None,
               durations: np.ndarray | None = None,
               features: dict[str, np.ndarray] | None = None):
    self.titles, self.type_rows, self.durations = titles, type_rows, durations
    self.features = dict(features or {})

  def __call__(self, video_id) -> dict[str, np.ndarray]:
    out = dict(self.titles(video_id)) if self.titles is not None else {}
    if self.type_rows is not None:
      out["content_type"] = np.int32(self.type_rows[int(video_id)])
    if self.durations is not None:
      out["duration"] = np.float32(self.durations[int(video_id)])
    for name, values in self.features.items():
      out[name] = values[int(video_id)]
    return out


class ImpressionExample(grain.transforms.Map):
  """(global index, video with its impressions) -> example: the sampled clip, and per-impression
  users and columns of shape (impressions_per_clip,) with a `weight` mask.

  With `titles`, the video's title inputs; with `query_view`, a second, independently sampled
  clip of the same video under `query_*` keys (the visual-query task's positive pair)."""

  def __init__(self, sampler: ClipSampler, user_vocab: Vocab, video_vocab: Vocab, seed: int,
               columns: tuple[str, ...], titles: TitleInputs | None = None,
               query_view: bool = False, history: ClickHistory | None = None,
               history_len: int = 0, log_q: np.ndarray | None = None):
    self.log_q = log_q
    self.sampler, self.user_vocab, self.video_vocab = sampler, user_vocab, video_vocab
    self.seed, self.columns = seed, columns
    self.titles, self.query_view = titles, query_view
    self.history, self.history_len = history, history_len

  def map(self, element):
    g, rec = element
    rng = np.random.default_rng([self.seed, g])
    ex = self.sampler.clip(rec["video_id"], rng)
    if self.query_view:
      ex.update({f"query_{k}": v for k, v in self.sampler.clip(rec["video_id"], rng).items()})
    if self.titles is not None:
      ex.update(self.titles(rec["video_id"]))
    ex.update({c: rec[c] for c in self.columns})
    if self.history is not None:
      ex["history"], ex["history_mask"] = self.history(rec["user_id"], rec["timestamp"],
                                                       self.history_len)
    if self.log_q is not None:
      ex["log_q"] = self.log_q[rec["video_id"]]
    ex.update(index=np.int64(g), video_id=rec["video_id"], user=self.user_vocab(rec["user_id"]),
              video=self.video_vocab(rec["video_id"]), weight=rec["weight"])
    return ex


@contextlib.contextmanager
def iterate(ds: grain.IterDataset):
  """Iterates `ds`; on exit closes the iterator (see `close`)."""
  it = iter(ds)
  try:
    yield it
  finally:
    close(it)


def close(it) -> None:
  """Closes a Grain iterator: its worker processes stop now rather than at exit."""
  getattr(it, "close", lambda: None)()


def iterable(ds: grain.MapDataset, options: LoaderOptions, **mp) -> grain.IterDataset:
  """`ds` read with `options`: read threads and prefetch here, or in worker processes.

  Worker processes send their batches pickled through the queue, not through shared memory:
  Grain unlinks each shared-memory batch from a background thread when the array is freed, and
  batches still in flight when the run exits were reported as "leaked shared_memory objects"
  (in about one run in five). The copy costs ~5% of the loader's throughput at the demo's batch
  sizes (benchmarks/decode.py: 604 vs 635 clips/s), far above what training consumes.

  Each worker runs numpy's linear algebra (the feature whitening's projections) on one thread
  (`one_blas_thread`): the workers are the parallelism, and OpenBLAS's own threads beside them
  and the training step oversubscribed the cores. At 20,000 videos that made the loader four
  times slower (benchmarks/results/scale.md).
  """
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=options.read_threads,
                                            prefetch_buffer_size=options.prefetch_batches))
  if options.num_workers > 0:
    it = grain.experimental.WithOptionsIterDataset(
        it, grain.experimental.DatasetOptions(min_shm_size=1 << 62))  # never shared memory
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=options.num_workers, **mp),
                        worker_init_fn=one_blas_thread)
  return it


def one_blas_thread(worker_index: int, worker_count: int) -> None:
  """A loader worker's start (Grain's `worker_init_fn`): numpy's BLAS on one thread."""
  del worker_index, worker_count
  threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def clip_log_q(video_ids: np.ndarray, groups: np.ndarray) -> np.ndarray:
  """log P(a training example's clip is of video v), indexed by video id: its share of the
  clips (`groups`) that an epoch serves, each once."""
  first = video_ids[groups[:, 0]]
  counts = np.bincount(first, minlength=int(video_ids.max()) + 1).astype(np.float64)
  with np.errstate(divide="ignore"):
    return np.log(counts / max(len(groups), 1)).astype(np.float32)


def train_dataset(split: Split, spec: InputSpec, sampler: ClipSampler, *, user_vocab: Vocab,
                  video_vocab: Vocab, video_ids: np.ndarray, batch_size: int,
                  impressions_per_clip: int, shuffle_seed: int, process_index: int,
                  process_count: int, options: LoaderOptions, start_batch: int = 0,
                  titles: TitleInputs | None = None, history: ClickHistory | None = None,
                  history_len: int = 0) -> grain.IterDataset:
  """The infinite training stream of local batches for this process, from global batch
  `start_batch` on.

  A batch holds batch_size / process_count clips, each with impressions_per_clip impressions of
  its video. `video_ids` is the video id of every record of `split`, in record order (the
  caller has read it already to build the vocabularies).
  """
  if len(video_ids) != len(split):
    raise DataError(f"{len(video_ids)} train video ids given for {len(split)} train records")
  groups = group_by_clip(np.asarray(video_ids), impressions_per_clip, shuffle_seed)
  log_q = clip_log_q(np.asarray(video_ids), groups) if spec.log_q else None
  columns = spec.impression + (("timestamp",) if spec.history else ())
  ds = grain.MapDataset.source(GroupedSource(split, groups, columns))
  ds = ds.shuffle(seed=shuffle_seed).repeat(None)
  ds = GlobalBatchSlice(ds, batch_size, process_index, process_count)
  ds = ds.map(ImpressionExample(sampler, user_vocab, video_vocab, shuffle_seed, spec.impression,
                                titles=titles, query_view=spec.query_view,
                                history=history if spec.history else None,
                                history_len=history_len, log_q=log_q))
  # Batches are formed before the worker split, so each worker builds whole batches and the
  # stream is the same for any number of workers.
  ds = ds.batch(batch_size // process_count, drop_remainder=True)[start_batch:]
  # Elements are whole batches: read a few ahead, not Grain's default of hundreds.
  return iterable(ds, options, per_worker_buffer_size=2)


class CatalogClip(grain.transforms.Map):
  """video id -> its clip for evaluation: the centre frame of each TSN segment, or with
  `query_seed` a random frame of each segment seeded by (query_seed, video id) (the query view
  of the visual-query evaluation); with `titles`, the video's title inputs."""

  def __init__(self, sampler: ClipSampler, titles: TitleInputs | None = None,
               query_seed: int | None = None):
    self.sampler, self.titles, self.query_seed = sampler, titles, query_seed

  def map(self, video_id):
    rng = None if self.query_seed is None else np.random.default_rng([self.query_seed,
                                                                       int(video_id)])
    ex = self.sampler.clip(int(video_id), rng)
    if self.titles is not None:
      ex.update(self.titles(video_id))
    ex["video_id"] = np.int64(video_id)
    return ex


def catalog_dataset(video_ids: np.ndarray, sampler: ClipSampler, *, batch_size: int,
                    options: LoaderOptions, titles: TitleInputs | None = None,
                    query_seed: int | None = None) -> grain.IterDataset:
  """Clips of `video_ids` in order, in batches of `batch_size` (the last one short)."""
  ds = grain.MapDataset.source(np.asarray(video_ids)).map(CatalogClip(sampler, titles,
                                                                      query_seed))
  return iterable(ds.batch(batch_size, drop_remainder=False), options)
