r"""A report page of runs and sweeps: python -m vidrec_jax.report DIR [DIR ...] --out=R.

Writes R/index.html (self-contained: inline CSS, no scripts) with its PNG plots beside it:
training curves per task and valid metrics over steps (one line per run), the final metric
table (one column per run), and for a sweep workdir the optimisation history, intermediate
values, parameter importances, parallel coordinates and the trial table.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging

from vidrec_jax import cli

_OUT = flags.DEFINE_string("out", None, "Directory for index.html and its plots.")
_TITLE = flags.DEFINE_string("title", "vidrec_jax report", "The page's title.")


def main(argv):
  paths = argv[1:]
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  if not paths or not _OUT.value:
    print("error: give one or more workdirs and --out=DIR", file=sys.stderr)
    sys.exit(cli.EXIT_BAD_CONFIG)
  missing = [p for p in paths if not os.path.isdir(p)]
  if missing:
    print(f"error: not a directory: {', '.join(missing)}", file=sys.stderr)
    sys.exit(cli.EXIT_BAD_CONFIG)
  from vidrec_jax.reporting import page  # pylint: disable=g-import-not-at-top
  try:
    path = page.build(paths, _OUT.value, _TITLE.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(cli.EXIT_BAD_CONFIG)
  print(f"report written to {path}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
