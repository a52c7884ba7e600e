"""What the command-line entry points (main, sweep, report) share: flag parsing whose errors are
one line, the quiet-library log filter, and the errors that end a run with one `error:` line."""

from __future__ import annotations

import os
import re
import sys

from absl import flags

EXIT_BAD_CONFIG = 2


DATASET = "--config.data.dataset."


def parse_flags(argv):
  """absl flag parsing, but a bad flag or config override is one line and exit status 2.

  `--config.data.dataset.name=NAME` switches any config to another registered dataset: the
  file's `data.dataset` section is replaced by NAME's arguments at their defaults
  (`DatasetSource.arguments`; validate.py `switch_dataset`), then the other `--config.data.dataset.*` overrides apply to it,
  e.g. `--config=configs/demo.py --config.data.dataset.name=microlens
  --config.data.dataset.path=FOLDER`. Whether the rest of the config fits the dataset (its
  labels, its splits) is validate.py's check."""
  argv, dataset = split_dataset_overrides(argv)
  saved = sys.argv
  try:
    if dataset:  # ml_collections reads the config overrides from sys.argv itself
      sys.argv = list(argv)
    try:
      rest = flags.FLAGS(argv)
    finally:
      sys.argv = saved
    if dataset:
      # Imported here: only a dataset switch pays for it (and for the dataset registry).
      from vidrec_jax import validate  # pylint: disable=g-import-not-at-top
      validate.switch_dataset(flags.FLAGS["config"].value, dataset)
    return rest
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections reports an unknown override field as AttributeError('\'x\'\nDid you mean'),
    # and an error of the config file's get_config (an unknown variant) inside a traceback.
    text = str(e).replace("\\n", "\n")
    if "Traceback (most recent call last)" in text:
      lines = [l.strip() for l in text.splitlines() if l.strip()]
      text = f"--config: {lines[-1]}"
    msg = " ".join(text.replace("\\'", "'").split()).strip("'")
    print(f"error: bad flag or config override: {_missing_field(msg, argv) or msg}",
          file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)


def _missing_field(msg: str, argv) -> str:
  """For ml_collections' bare `'name'` (an override of a field the config lacks): the override
  and the section it names; '' when `msg` is something else."""
  m = re.fullmatch(r"""["']*([A-Za-z_][A-Za-z_0-9]*)["']*""", msg)
  if not m:
    return ""
  name = m.group(1)
  for arg in argv:
    flag = str(arg).split("=", 1)[0]
    parts = flag[len("--config."):].split(".") if flag.startswith("--config.") else []
    if name in parts:
      section = ".".join(parts[:parts.index(name)]) or "the config"
      out = f"{flag}: the config has no field {name!r} in {section}"
      if section == "data.dataset":
        out += (" (data.dataset holds the arguments of the dataset the config file sets; "
                "--config.data.dataset.name=NAME switches to another dataset's arguments, e.g. "
                "--config.data.dataset.name=microlens --config.data.dataset.path=FOLDER)")
      return out
  return ""


def split_dataset_overrides(argv) -> tuple[list, list[tuple[str, str]]]:
  """(argv without its `--config.data.dataset.KEY=VALUE` overrides, those (KEY, VALUE) in
  order) when one of them sets `name`; else (argv, [])."""
  pairs = [(i, str(a)[len(DATASET):].split("=", 1)) for i, a in enumerate(argv)
           if str(a).startswith(DATASET) and "=" in str(a)]
  if not any(kv[0] == "name" for _, kv in pairs):
    return list(argv), []
  drop = {i for i, _ in pairs}
  return [a for i, a in enumerate(argv) if i not in drop], [(k, v) for _, (k, v) in pairs]


class QuietLibraries:
  """Drops INFO records of chatty libraries (Orbax logs every save step by step)."""

  PREFIXES = ("orbax", "grain", "tensorflow_datasets", "jax")

  def filter(self, record) -> bool:
    path = record.pathname.replace(os.sep, "/")
    return record.levelno > 20 or not any(f"/{p}/" in path for p in self.PREFIXES)


def run_errors() -> tuple[type[Exception], ...]:
  """Errors that end a run with one `error:` line and exit status 1 (no traceback): missing or
  bad data and caches, a diverged loss, a workdir trained with another config."""
  from vidrec_jax import config_io  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data import features  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data.datasets import DataError  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train import checkpointing  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train import runner  # pylint: disable=g-import-not-at-top
  return (DataError, features.CacheError, FileNotFoundError, runner.NonFiniteLossError,
          checkpointing.DataPositionError, config_io.ConfigChangedError)
