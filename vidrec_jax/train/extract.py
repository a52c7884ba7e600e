"""`--mode=extract`: backbone features of every video of a dataset, computed once and cached.

Each JAX process takes every P-th video of the catalog, decodes it with PyAV in Grain worker
processes, runs the backbone on batches of frames sharded over its local devices, and writes its
own ArrayRecord shard; process 0 writes the metadata last, after every shard is in place.
Undecodable videos are reported by path, counted in the metadata and skipped; training from the
cache then gives their impressions zero weight, as the pixel pipeline does.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import grain
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vidrec_jax import files
from vidrec_jax.data import features
from vidrec_jax.data import flow_cache
from vidrec_jax.data import ops
from vidrec_jax.data import pipeline
from vidrec_jax.data import video_io
from vidrec_jax.data.datasets import Catalog
from vidrec_jax.data.datasets import RecDataset
from vidrec_jax.models import backbones
from vidrec_jax.models import layers
from vidrec_jax.models.backbones import part as backbone_part
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.train import distributed
from vidrec_jax.train import mesh as mesh_lib


def expected_meta(run: RunSpec) -> dict:
  """Settings a cache must have been extracted with to serve this run."""
  b, d = backbone_part.BackboneArgs.from_config(run.model), run.data
  return dict(backbone=b.name, checkpoint=b.checkpoint, outputs=list(b.outputs), grid=b.grid,
              frame_size=d.frame_size, normalization=d.normalization,
              max_frames=d.cache_frames, selection=d.frame_selection,
              dim=backbone_part.feature_dim(b))


class _Decode(grain.transforms.Map):
  """video id -> up to `max_frames` decoded frames (`selection`: video_io.frame_indices),
  normalised (or an error)."""

  def __init__(self, catalog: Catalog, frame_size: int, normalization: str, max_frames: int,
               selection: str = "spaced"):
    self.catalog, self.frame_size = catalog, frame_size
    self.normalization, self.max_frames, self.selection = normalization, max_frames, selection

  def map(self, video_id):
    path = self.catalog.path(int(video_id))
    if not path:
      return {"video_id": int(video_id), "error": f"video {int(video_id)} has no video file"}
    try:
      frames, idx = video_io.read_frames(path, self.frame_size, self.max_frames,
                                         self.selection)
    except video_io.VideoDecodeError as e:
      return {"video_id": int(video_id), "error": str(e)}
    return {"video_id": int(video_id), "frame_index": idx.astype(np.int32),
            "frames": ops.normalize(frames, self.normalization)}


class _Batcher:
  """Packs the frames of consecutive videos into fixed-size device batches and writes each
  video's record once all of its frames are encoded (a video may span batches)."""

  def __init__(self, encode: Callable[[np.ndarray], np.ndarray], batch_size: int,
               writer: features.ShardWriter):
    self.encode, self.batch_size, self.writer = encode, batch_size, writer
    self.pending: list[dict] = []  # videos whose frames are (partly) in `buffer`
    self.buffer: list[np.ndarray] = []
    self.videos = self.frames = 0

  def add(self, video: dict) -> None:
    self.buffer.append(video.pop("frames"))
    self.pending.append(video)
    if sum(len(x) for x in self.buffer) >= self.batch_size:
      self.flush(final=False)

  def flush(self, final: bool) -> None:
    frames = np.concatenate(self.buffer) if self.buffer else np.zeros((0,), np.float32)
    bs, done, outs = self.batch_size, 0, []
    while len(frames) - done >= bs or (final and done < len(frames)):
      chunk = frames[done:done + bs]
      n = len(chunk)
      if n < bs:  # one static batch shape: pad the last one
        chunk = np.concatenate([chunk, np.zeros((bs - n,) + chunk.shape[1:], chunk.dtype)])
      outs.append(self.encode(chunk)[:n])
      done += n
    if not outs:
      return
    vecs = np.concatenate(outs)
    self.frames += len(vecs)
    pos = 0
    while self.pending and pos + len(self.pending[0]["frame_index"]) <= len(vecs):
      v = self.pending.pop(0)
      n = len(v["frame_index"])
      self.writer.write(v["video_id"], v["frame_index"], vecs[pos:pos + n])
      pos += n
      self.videos += 1
    # Frames of videos not yet complete stay buffered for the next flush.
    self.buffer = [frames[pos:]] if pos < len(frames) else []


def _encoder(run: RunSpec) -> Callable[[np.ndarray], np.ndarray]:
  """Normalised frames (N, S, S, 3) -> grid-pooled backbone features (N, D), on this process's
  devices (the batch split over them)."""
  b = backbone_part.BackboneArgs.from_config(run.model)
  mesh = Mesh(np.asarray(jax.local_devices()), ("batch",))
  net = backbones.load(b.name, b.checkpoint or None, dtype=layers.as_dtype(run.model.dtype))
  graphdef, state = nnx.split(net)
  state = mesh_lib.replicate(state, mesh)

  @jax.jit
  def encode(state, frames):
    frames = jax.lax.with_sharding_constraint(frames, NamedSharding(mesh, PartitionSpec("batch")))
    return backbone_part.frame_vectors(nnx.merge(graphdef, state), frames, b.outputs, b.grid)
  return lambda frames: np.asarray(encode(state, jnp.asarray(frames)))


def _gather_skipped(bad: list[int]) -> np.ndarray:
  """Every process's skipped video ids (padded to the longest list for the allgather)."""
  longest = int(np.asarray(multihost_utils.process_allgather(np.int32(len(bad)))).max())
  padded = np.full(max(longest, 1), -1, np.int32)
  padded[:len(bad)] = bad
  skipped = np.asarray(multihost_utils.process_allgather(padded)).reshape(-1)
  return np.sort(skipped[skipped >= 0])


def extract(run: RunSpec, dataset: RecDataset, out_dir: str) -> dict:
  """Writes the feature cache for every catalog video into `out_dir`; returns its metadata."""
  d = run.data
  want = expected_meta(run)
  try:
    meta = features.check_meta(out_dir, want)
    logging.info("feature cache %s is complete for this config; nothing to do", out_dir)
    return meta
  except features.CacheError:
    pass
  catalog = dataset.catalog
  os.makedirs(out_dir, exist_ok=True)
  pi, pc = jax.process_index(), jax.process_count()
  ids = np.arange(len(catalog))[pi::pc]
  ndev = jax.local_device_count()
  bs = max(run.model.backbone.extract_batch_size // ndev, 1) * ndev
  ds = pipeline.iterable(
      grain.MapDataset.source(ids).map(_Decode(catalog, d.frame_size, d.normalization,
                                               d.cache_frames, d.frame_selection)),
      pipeline.LoaderOptions(d.num_workers, d.read_threads, prefetch_batches=4))
  shard = features.shard_path(out_dir, pi, pc)
  bad: list[int] = []  # video ids this process could not decode
  t0 = time.time()
  with files.atomic_path(shard) as tmp:
    writer = features.ShardWriter(tmp)
    batcher = _Batcher(_encoder(run), bs, writer)
    with pipeline.iterate(ds) as it:
      for ex in tqdm.tqdm(it, total=len(ids), desc="extract", disable=pi != 0, mininterval=2.0):
        if "error" in ex:
          bad.append(int(ex["video_id"]))
          logging.warning("extract skips undecodable video %s", ex["error"])
        else:
          batcher.add(ex)
    batcher.flush(final=True)
    writer.close(final_path=shard)
  secs = time.time() - t0
  logging.info("process %d: %d videos, %d frames in %.1f s (%.1f frames/s), %d skipped",
               pi, batcher.videos, batcher.frames, secs, batcher.frames / max(secs, 1e-9),
               len(bad))
  written = int(np.asarray(multihost_utils.process_allgather(np.int32(batcher.videos))).sum())
  skipped = _gather_skipped(bad)
  multihost_utils.sync_global_devices("vidrec_extract_shards")
  meta = dict(want, shards=[os.path.basename(features.shard_path(out_dir, i, pc))
                            for i in range(pc)],
              num_videos=written, num_skipped=len(skipped),
              skipped=[str(catalog.filename[v]) for v in skipped.tolist()])
  distributed.host0_then_barrier("vidrec_extract_meta",
                                 lambda: features.write_meta(out_dir, meta))
  return meta


def extract_flow(catalog: Catalog, data, cache_dir: str, form: str) -> dict:
  """The flow cache of `form` for every catalog video in `cache_dir` (data/flow_cache.py),
  written unless a finished one serves it; with several processes each estimates and writes
  the shard of videos p, p + P, ... (as `extract` shards the features) and process 0 writes the
  metadata once every shard is in place. Returns the metadata."""
  try:
    return flow_cache.check(cache_dir, data, form)
  except features.CacheError:
    pass
  pi, pc = jax.process_index(), jax.process_count()
  distributed.host0_then_barrier("vidrec_flow_begin", lambda: flow_cache.begin(cache_dir, form))
  failed = flow_cache.write_shard(catalog, data, cache_dir, form, pi, pc, show_progress=pi == 0)
  if pc > 1:
    failed = int(np.asarray(multihost_utils.process_allgather(np.int32(failed))).sum())
    multihost_utils.sync_global_devices("vidrec_flow_shards")
  distributed.host0_then_barrier(
      "vidrec_flow_meta", lambda: flow_cache.finish(catalog, data, cache_dir, form, pc, failed))
  return flow_cache.check(cache_dir, data, form)
