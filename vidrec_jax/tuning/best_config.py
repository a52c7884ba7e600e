"""The best trial of a sweep as a config file one can run: the base config, its command-line
overrides and the trial's parameters (`:trial` adds the settings every trial ran with)."""

from __future__ import annotations

import time
from typing import Any

import optuna

from vidrec_jax import files
from vidrec_jax.tuning import space


def _params_to_values(sweep, params: dict[str, Any]) -> dict[str, Any]:
  """A trial's stored params -> config values (tuple choices are stored by their repr)."""
  out = {}
  for p in sweep.params:
    v = params[p.field]
    if p.kind == "choice" and isinstance(v, str) and v not in p.choices:
      v = p.choices[[repr(c) for c in p.choices].index(v)]
    out[p.field] = v
  return out


BEST_CONFIG = '''"""The best trial of the sweep in {root}:
trial {number}, {metric} = {value:.6f}{test}.

  python -m vidrec_jax.main --config={path} --workdir=DIR          # full-length run
  python -m vidrec_jax.main --config={path}:trial --workdir=DIR    # exactly the trial

The base config and its command-line overrides, then the trial's parameters; with `:trial` also
the settings every trial ran with (sweep.trial). Written by vidrec_jax.sweep {when}.
"""

from vidrec_jax.tuning import space

BASE = {base!r}
OVERRIDES = {overrides!r}
PARAMS = {params!r}
TRIAL = {trial!r}


def get_config(arg: str = ""):
  file, _, base_arg = BASE.partition(":")
  c = space.load_config_file(file, base_arg)
  c = space.apply(c, OVERRIDES)
  c = space.apply(c, PARAMS)
  if arg == "trial":
    c = space.apply(c, TRIAL)
  elif arg:
    raise ValueError(f"best_config.py: unknown argument {{arg!r}}; allowed: trial")
  return c
'''


def write(path: str, best: optuna.trial.FrozenTrial, sweep) -> None:
  """Writes the best trial of `sweep` (a study.Sweep) as a runnable config file."""
  test = best.user_attrs.get(sweep.test_metric)
  text = BEST_CONFIG.format(
      root=sweep.root, number=best.number, metric=sweep.sweep.metric, value=best.value,
      test=f" ({sweep.test_metric} = {test:.6f})" if test is not None else "", path=path,
      when=time.strftime("%Y-%m-%d %H:%M:%S"), base=sweep.base_file,
      overrides=sweep.overrides, params=_params_to_values(sweep, best.params),
      trial=space.trial_settings(sweep.sweep))
  with files.atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write(text)
