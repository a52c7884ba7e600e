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

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vidrec_jax.data import features
from vidrec_jax.data import generate
from vidrec_jax.data import ops
from vidrec_jax.data import pipeline
from vidrec_jax.data import video_io
from vidrec_jax.models import backbone_encoder
from vidrec_jax.models import backbones
from vidrec_jax.models import layers


def expected_meta(config: ml_collections.ConfigDict) -> dict:
  """Settings a cache must have been extracted with to serve this config."""
  b, d = config.model.backbone, config.data
  return dict(backbone=b.name, checkpoint=b.checkpoint, outputs=list(b.outputs), grid=b.grid,
              frame_size=d.frame_size, normalization=d.normalization,
              max_frames=d.get("cache_frames", 64),
              dim=backbone_encoder.feature_dim(config.model))


class _Decode(grain.transforms.Map):
  """video id -> up to `max_frames` evenly spaced decoded frames, normalised (or an error)."""

  def __init__(self, catalog: pipeline.Catalog, frame_size: int, normalization: str,
               max_frames: int):
    self.catalog, self.frame_size = catalog, frame_size
    self.normalization, self.max_frames = normalization, max_frames

  def map(self, video_id):
    path = self.catalog.path(int(video_id))
    try:
      frames = video_io.decode_video(path, self.frame_size)
    except video_io.VideoDecodeError as e:
      return {"video_id": int(video_id), "error": str(e)}
    n = len(frames)
    idx = (np.arange(n) if n <= self.max_frames else
           np.round(np.linspace(0, n - 1, self.max_frames)).astype(np.int64))
    return {"video_id": int(video_id), "frame_index": idx.astype(np.int32),
            "frames": ops.normalize(frames[idx], self.normalization)}


def extract(config: ml_collections.ConfigDict, workdir: str, data_dir: str, out_dir: str
            ) -> dict:
  """Writes the feature cache for every catalog video into `out_dir`; returns its metadata."""
  b, d = config.model.backbone, config.data
  if jax.process_index() == 0 and not d.data_dir:
    generate.ensure(data_dir, d.world)
  multihost_utils.sync_global_devices("vidrec_extract_data")
  want = expected_meta(config)
  try:
    meta = features.check_meta(out_dir, want)
    logging.info("feature cache %s is complete for this config; nothing to do", out_dir)
    return meta
  except features.CacheError:
    pass
  catalog = pipeline.Catalog.load(data_dir)
  os.makedirs(out_dir, exist_ok=True)
  pi, pc = jax.process_index(), jax.process_count()
  ids = np.arange(len(catalog))[pi::pc]

  devices = jax.local_devices()
  mesh = Mesh(np.asarray(devices), ("batch",))
  bs = max(b.extract_batch_size // len(devices), 1) * len(devices)
  net = backbones.load(b.name, b.checkpoint or None, dtype=layers.as_dtype(config.model.dtype))
  graphdef, state = nnx.split(net)
  state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))

  @jax.jit
  def encode(state, frames):
    frames = jax.lax.with_sharding_constraint(
        frames, NamedSharding(mesh, PartitionSpec("batch")))
    return backbone_encoder.frame_vectors(nnx.merge(graphdef, state), frames, b.outputs, b.grid)

  ds = grain.MapDataset.source(ids).map(
      _Decode(catalog, d.frame_size, d.normalization, want["max_frames"])).to_iter_dataset(
          grain.ReadOptions(num_threads=d.read_threads, prefetch_buffer_size=4))
  if d.num_workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=d.num_workers))

  shard = features.shard_path(out_dir, pi, pc)
  tmp = shard + ".tmp"
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  writer = array_record_module.ArrayRecordWriter(tmp, "group_size:1")
  pending: list[dict] = []  # decoded videos whose frames are (partly) in `buf`
  buf: list[np.ndarray] = []
  bad: list[int] = []  # video ids this process could not decode
  written, frames_done, t0 = 0, 0, time.time()

  def flush(final: bool) -> None:
    nonlocal buf, pending, written, frames_done
    frames = np.concatenate(buf) if buf else np.zeros((0,), np.float32)
    done = 0
    outs = []
    while len(frames) - done >= bs or (final and done < len(frames)):
      chunk = frames[done:done + bs]
      n = len(chunk)
      if n < bs:
        chunk = np.concatenate([chunk, np.zeros((bs - n,) + chunk.shape[1:], chunk.dtype)])
      outs.append(np.asarray(encode(state, jnp.asarray(chunk)))[:n])
      done += n
    if not outs:
      return
    vecs = np.concatenate(outs)
    frames_done += len(vecs)
    pos = 0
    finished = []
    for v in pending:
      n = len(v["frame_index"])
      if pos + n > len(vecs):
        break
      writer.write(features.encode_record(v["video_id"], v["frame_index"], vecs[pos:pos + n]))
      pos += n
      written += 1
      finished.append(v)
    # Frames of videos not yet complete stay buffered for the next flush.
    pending = pending[len(finished):]
    buf = [frames[pos:]] if pos < len(frames) else []

  bar = tqdm.tqdm(total=len(ids), desc="extract", disable=pi != 0, mininterval=2.0)
  for ex in ds:
    bar.update(1)
    if "error" in ex:
      bad.append(int(ex["video_id"]))
      logging.warning("extract skips undecodable video %s", ex["error"])
      continue
    pending.append(ex)
    buf.append(ex.pop("frames"))
    if sum(len(x) for x in buf) >= bs:
      flush(final=False)
  flush(final=True)
  bar.close()
  writer.close()
  os.replace(tmp, shard)
  secs = time.time() - t0
  logging.info("process %d: %d videos, %d frames in %.1f s (%.1f frames/s), %d skipped",
               pi, written, frames_done, secs, frames_done / max(secs, 1e-9), len(bad))
  counts = np.asarray(multihost_utils.process_allgather(np.array([written, len(bad)])))
  counts = counts.reshape(-1, 2)
  # Every process's skipped ids, padded to the longest list for the allgather.
  padded = np.full(max(int(counts[:, 1].max()), 1), -1, np.int32)
  padded[:len(bad)] = bad
  skipped = np.asarray(multihost_utils.process_allgather(padded)).reshape(-1)
  multihost_utils.sync_global_devices("vidrec_extract_shards")
  meta = dict(want, shards=[os.path.basename(features.shard_path(out_dir, i, pc))
                            for i in range(pc)],
              num_videos=int(counts[:, 0].sum()), num_skipped=int(counts[:, 1].sum()),
              skipped=[catalog.filename[v] for v in sorted(skipped[skipped >= 0].tolist())])
  if pi == 0:
    features.write_meta(out_dir, meta)
  multihost_utils.sync_global_devices("vidrec_extract_meta")
  return meta
