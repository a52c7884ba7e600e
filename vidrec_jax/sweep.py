r"""Hyperparameter search: python -m vidrec_jax.sweep --config=configs/demo.py:smoke --workdir=DIR
--trials=N.

Runs (or resumes) the Optuna study in DIR over the search space `config.sweep.space` until it
holds N finished trials, each a real training run in DIR/trials/NNNN, and writes
DIR/best_config.py and DIR/trials.json (vidrec_jax/tuning/study.py has the layout). The same
command run again resumes: finished trials are kept, an interrupted one is re-run from its
checkpoint. Run it on several hosts against one `--storage` (an RDB URL, or a journal file on a
shared disk) and they share the study.

A bad search space or sweep setting is one `error:` line and exit status 2.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from vidrec_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "The study's directory.")
_TRIALS = flags.DEFINE_integer("trials", None,
                               "Finished trials the study should hold (default: sweep.trials).")
_STORAGE = flags.DEFINE_string(
    "storage", None, "Overrides sweep.storage: '' (SQLite in WORKDIR), 'journal', a .journal "
    "path, or an RDB URL shared by several hosts.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show the progress bar.")


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  if _CONFIG.value is None or not _WORKDIR.value:
    print("error: --config and --workdir are required", file=sys.stderr)
    sys.exit(cli.EXIT_BAD_CONFIG)
  from vidrec_jax.config_checks import ConfigError  # pylint: disable=g-import-not-at-top
  from vidrec_jax.tuning import study  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  if _STORAGE.value is not None:
    with config.unlocked():
      config.sweep.storage = _STORAGE.value
  if _TRIALS.value is not None and _TRIALS.value < 1:
    print(f"error: --trials={_TRIALS.value}: expected an integer >= 1", file=sys.stderr)
    sys.exit(cli.EXIT_BAD_CONFIG)
  base = config_flags.get_config_filename(flags.FLAGS["config"])
  file, sep, arg = base.partition(":")
  base = os.path.abspath(file) + sep + arg
  overrides = dict(config_flags.get_override_values(flags.FLAGS["config"]))
  try:
    study.run_sweep(config, _WORKDIR.value, _TRIALS.value, base, overrides, _PROGRESS.value)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(cli.EXIT_BAD_CONFIG)
  except cli.run_errors() as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main, flags_parser=cli.parse_flags)
