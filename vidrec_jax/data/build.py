"""Datasets are built once into a run's data dir and never overwritten.

A built dataset carries a stamp (a JSON file) of the settings it was built from. `build_once`
reuses a data dir whose stamp matches, builds one that does not exist, and refuses anything
else in one line naming the settings that differ (a forgotten `--config.data.dataset...`
override must not replace a world that took an hour to render). A build writes to
`DATA_DIR.partial` and is moved into place only when complete: a crash or a kill mid-build
leaves no half-written dataset at DATA_DIR, and the next run discards the leftover and builds
again.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, Mapping

from absl import logging

from vidrec_jax import files
from vidrec_jax.config_io import flat
from vidrec_jax.data.datasets.schema import DataError

ABSENT = "(absent)"


def changes(saved: Mapping[str, Any], want: Mapping[str, Any],
            names: Mapping[str, str]) -> list[str]:
  """'field: saved -> wanted' for every leaf that differs between two stamps; a stamp key is
  shown by the first prefix of `names` it starts with, mapped (e.g. 'world.' -> 'data.dataset.')."""
  old, new = flat(dict(saved)), flat(dict(want))
  out = []
  for k in sorted(set(old) | set(new)):
    a, b = old[k] if k in old else ABSENT, new[k] if k in new else ABSENT
    if a != b:
      shown = next((n + k[len(p):] for p, n in names.items() if k.startswith(p)), k)
      out.append(f"{shown}: {a!r} -> {b!r}")
  return out


def build_once(data_dir: str, stamp_file: str, stamp: Mapping[str, Any],
               build: Callable[[str], None], names: Mapping[str, str]) -> bool:
  """The dataset of `stamp` in `data_dir`: reused (False) when its stamp file matches, built
  (True) by `build(directory)` (which writes everything but the stamp) when `data_dir` does not
  exist or is empty; a DataError otherwise. `names` maps stamp keys to the fields the error
  names (see `changes`)."""
  path = os.path.join(data_dir, stamp_file)
  if os.path.exists(path):
    saved = files.read_json(path)
    if saved == stamp:
      logging.info("reusing the dataset in %s", data_dir)
      return False
    raise DataError(
        f"{data_dir} holds a dataset built with other settings "
        f"({'; '.join(changes(saved, stamp, names))}); it is never overwritten: run with its "
        "settings, or use another workdir or data.data_dir")
  if os.path.isdir(data_dir) and os.listdir(data_dir):
    raise DataError(f"{data_dir} holds files but no finished dataset ({stamp_file} is missing); "
                    "it is never overwritten: remove it, or use another workdir or "
                    "data.data_dir")
  partial = data_dir.rstrip(os.sep) + ".partial"
  if os.path.exists(partial):
    logging.warning("discarding %s, left by an interrupted build", partial)
    shutil.rmtree(partial)
  os.makedirs(partial)
  build(partial)
  files.write_json(os.path.join(partial, stamp_file), dict(stamp))
  if os.path.isdir(data_dir):
    os.rmdir(data_dir)  # empty, checked above
  os.replace(partial, data_dir)
  logging.info("dataset written to %s", data_dir)
  return True
