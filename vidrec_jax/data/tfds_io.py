"""What every TFDS/ArrayRecord dataset of the project shares: writing builders reproducibly and
opening a split with one-line errors.

TFDS serialises each example's feature map in an order that changes from process to process
(protobuf map order), so `write` rewrites every record with deterministic (key-sorted)
serialisation once the builder has written it: the same data gives the same bytes.
"""

from __future__ import annotations

import glob
import os
import shutil
from typing import Callable

from array_record.python import array_record_module
from tensorflow_datasets.proto import tf_example_pb2

from vidrec_jax import files
from vidrec_jax.data.datasets.schema import DataError
from vidrec_jax.data.datasets.schema import Split


CANONICAL_CHUNK = 8192  # records in memory at a time while canonicalising


def canonicalize(data_dir: str, name: str, version: str) -> None:
  """Rewrites every ArrayRecord file of builder `name` under `data_dir` with deterministically
  serialised examples (same records, same order, same writer options), atomically. Records
  are read `CANONICAL_CHUNK` at a time, so a shard is never held in memory whole."""
  pattern = os.path.join(data_dir, name, "*", version, "*.array_record-*")
  for path in sorted(glob.glob(pattern)):
    reader = array_record_module.ArrayRecordReader(path)
    try:
      options, n = reader.writer_options_string(), reader.num_records()
      with files.atomic_path(path) as tmp:
        writer = array_record_module.ArrayRecordWriter(tmp, options)
        for start in range(0, n, CANONICAL_CHUNK):
          for raw in reader.read(start, min(n, start + CANONICAL_CHUNK)):
            example = tf_example_pb2.Example()
            example.ParseFromString(raw)
            writer.write(example.SerializeToString(deterministic=True))
        writer.close()
    finally:
      reader.close()


def write(data_dir: str, name: str, version: str, builders: list) -> None:
  """Writes the builders' datasets (ArrayRecord) from scratch, then canonicalises them."""
  root = os.path.join(data_dir, name)
  if os.path.exists(root):
    shutil.rmtree(root)
  for b in builders:
    b.download_and_prepare(file_format="array_record")
  canonicalize(data_dir, name, version)


def open_split(data_dir: str, name: str, version: str, config: str, split: str,
               builder: Callable, hint: str) -> Split:
  """One split as a `Split` over `open_source`, its decoded columns stored inside the dataset's
  version folder (so they are replaced, moved and removed with the dataset)."""
  return Split(split, open_source(data_dir, name, version, config, split, builder, hint),
               os.path.join(data_dir, name, config, version, "columns", split))


def open_source(data_dir: str, name: str, version: str, config: str, split: str,
                builder: Callable, hint: str):
  """The ArrayRecord data source of one split, or a one-line DataError (`hint` says how to
  make the dataset)."""
  path = os.path.join(data_dir, name, config, version)
  if not os.path.isdir(path):
    raise DataError(f"dataset not found: {path} does not exist ({hint})")
  try:
    return builder(data_dir, config).as_data_source(split)
  except Exception as e:  # noqa: BLE001 - TFDS raises many types; the user needs one line.
    raise DataError(f"dataset at {path} is unreadable for split {split!r}: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
