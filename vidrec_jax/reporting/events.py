"""Scalars of a run's TensorBoard event files (what the runner writes with tensorboardX), read
without TensorFlow: TFRecord framing around `Event` protos."""

from __future__ import annotations

import glob
import os
import struct

from absl import logging


def _records(path: str):
  with open(path, "rb") as f:
    data = f.read()
  pos = 0
  while pos + 12 <= len(data):
    (length,) = struct.unpack("<Q", data[pos:pos + 8])
    start, end = pos + 12, pos + 12 + length
    if end + 4 > len(data):  # a record cut short by a kill: the rest is not there yet
      logging.warning("%s: truncated record at byte %d ignored", path, pos)
      return
    yield data[start:end]
    pos = end + 4


def read_scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} sorted by step, from WORKDIR/tensorboard; a later write of
  the same step (a resumed run) replaces the earlier one. Tags use '_at_' for '@'."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
    for record in _records(path):
      event = event_pb2.Event()
      try:
        event.ParseFromString(record)
      except Exception:  # pylint: disable=broad-except
        logging.warning("%s: an unreadable event record was skipped", path)
        continue
      for value in event.summary.value:
        if value.HasField("simple_value"):
          out.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
  return {tag: sorted(points.items()) for tag, points in out.items()}
