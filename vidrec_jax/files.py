"""Atomic file writes: a reader never sees a half-written file under its real name.

Everything the project writes for later runs to trust (video files, feature shards, caches,
metadata, the config of record) goes through `atomic_path`: the data is written to a temporary
name next to the target and renamed over it only once complete, so a crash leaves either the
old file or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path to write; on success it replaces `path`, on error it is removed.

  The temporary name keeps the extension last (`x.tmp-<pid>-<token>.mp4` for `x.mp4`), so
  writers that pick a format by extension (PyAV containers, numpy) behave as for `path`. It is
  unique to the writer: two processes writing one path at once (two hosts of a sweep on a
  shared disk writing its config.json) each rename their own complete file, the last one wins,
  and neither finds its temporary file taken by the other.
  """
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp-{os.getpid()}-{secrets.token_hex(4)}{ext}"
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented, key-sorted JSON, atomically."""
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.write("\n")


def read_json(path: str) -> Any:
  """The JSON value stored at `path` (UTF-8)."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)
