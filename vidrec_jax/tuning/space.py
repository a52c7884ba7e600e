"""A sweep's search space, written in the config as `config.sweep.space`: one string per
parameter, `FIELD=DISTRIBUTION`, e.g.

  space=("train.learning_rate=loguniform(1e-3, 1e-2)",
         "model.id_dropout=uniform(0.0, 0.8)",
         "model.embed_dim=choice(16, 32, 64)",
         "model.pooling=choice(mean_max, masked_mean, masked_max)",
         "train.warmup_steps=int(0, 200, step=50)")

Distributions: `uniform(lo, hi)`, `loguniform(lo, hi)`, `int(lo, hi)` (optional `step=` or
`log=True`), `choice(a, b, ...)` (numbers, booleans, tuples, or bare words as strings: registered
part names). Parsing checks every field against the config and every choice (and both ends of
every range) against the config validation, so an unknown part name, a misspelt field or a value
of the wrong type is one line before any trial starts.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import os
from typing import Any

import ml_collections

from vidrec_jax.config_checks import ConfigError

KINDS = ("uniform", "loguniform", "int", "choice")
# The dataset is written once and shared by every trial of a study.
FIXED_PREFIXES = ("data.dataset", "data.data_dir", "data.feature_cache", "data.text_cache",
                  "sweep", "mode")


@dataclasses.dataclass(frozen=True)
class Param:
  """One searched config field."""
  field: str
  kind: str  # one of KINDS
  low: float | int | None = None
  high: float | int | None = None
  step: int | None = None
  log: bool = False
  choices: tuple[Any, ...] = ()

  def candidates(self) -> tuple[Any, ...]:
    """Values that parsing checks against the config: every choice, or both ends of a range."""
    return self.choices if self.kind == "choice" else (self.low, self.high)


def _literal(node: ast.expr, spec: str) -> Any:
  if isinstance(node, ast.Name):  # a bare word: a string (e.g. a registered part name)
    return node.id
  try:
    value = ast.literal_eval(node)
  except ValueError:
    raise ConfigError(f"sweep.space {spec!r}: {ast.unparse(node)!r} is not a number, string, "
                      "boolean or tuple") from None
  return tuple(value) if isinstance(value, list) else value


def parse_one(spec: str) -> Param:
  """'FIELD=KIND(args)' -> Param, or a one-line ConfigError naming what is allowed."""
  field, sep, dist = spec.partition("=")
  field, dist = field.strip(), dist.strip()
  if not sep or not field or not dist:
    raise ConfigError(f"sweep.space {spec!r}: expected FIELD=DISTRIBUTION, e.g. "
                      "'train.learning_rate=loguniform(1e-3, 1e-2)'")
  try:
    call = ast.parse(dist, mode="eval").body
  except SyntaxError:
    call = None
  if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
          and call.func.id in KINDS):
    raise ConfigError(f"sweep.space {spec!r}: unknown distribution {dist!r}; allowed: "
                      f"{', '.join(k + '(...)' for k in KINDS)}")
  kind = call.func.id
  args = [_literal(a, spec) for a in call.args]
  kwargs = {k.arg: _literal(k.value, spec) for k in call.keywords}
  if kind == "choice":
    if not args or kwargs:
      raise ConfigError(f"sweep.space {spec!r}: choice(...) takes one or more values")
    return Param(field, kind, choices=tuple(args))
  allowed = {"int": ("step", "log")}.get(kind, ())
  bad = sorted(set(kwargs) - set(allowed))
  numeric = all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
  if len(args) != 2 or bad or not numeric or args[0] >= args[1]:
    raise ConfigError(f"sweep.space {spec!r}: {kind}(low, high) needs two numbers, low < high"
                      + (f", keywords {', '.join(allowed)}" if allowed else ", no keywords"))
  low, high = args
  if kind == "int":
    if not all(isinstance(a, int) for a in args):
      raise ConfigError(f"sweep.space {spec!r}: int(low, high) needs integer bounds")
    step, log = kwargs.get("step"), bool(kwargs.get("log", False))
    if step is not None and (not isinstance(step, int) or step < 1 or log):
      raise ConfigError(f"sweep.space {spec!r}: step must be a positive integer (not with log)")
    return Param(field, kind, low, high, step=step, log=log)
  if kind == "loguniform" and low <= 0:
    raise ConfigError(f"sweep.space {spec!r}: loguniform needs low > 0")
  return Param(field, kind, float(low), float(high), log=kind == "loguniform")


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
  node = config
  for i, key in enumerate(field.split(".")):
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
      where = ".".join(field.split(".")[:i]) or "the config"
      keys = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      raise ConfigError(f"sweep.space: field {field!r} is not in the config ({where} has: "
                        f"{', '.join(keys) or 'no fields'})")
    node = node[key]
  return node


def apply(config: ml_collections.ConfigDict, values: dict[str, Any]
          ) -> ml_collections.ConfigDict:
  """A copy of `config` with `values` ({'train.learning_rate': 3e-3, ...}) set; ints widen to
  float fields, tuples and lists are interchangeable."""
  out = copy.deepcopy(config)
  with out.unlocked():
    for field, value in values.items():
      *path, last = field.split(".")
      node = out
      for key in path:
        node = node[key]
      old = node[last]
      if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
      if isinstance(old, tuple) and isinstance(value, list):
        value = tuple(value)
      try:
        node[last] = value
      except TypeError:
        raise ConfigError(f"sweep: {field}={value!r} does not fit the config field, which "
                          f"holds a {type(old).__name__} ({old!r})") from None
  return out


def parse(config: ml_collections.ConfigDict, specs: tuple[str, ...] | list[str]
          ) -> list[Param]:
  """Parses `specs` and checks each against `config` (fields exist, are not shared by the
  study, and every candidate value passes the config validation)."""
  from vidrec_jax import validate  # pylint: disable=g-import-not-at-top
  params = [parse_one(s) for s in specs]
  if not params:
    raise ConfigError("sweep.space is empty: give one 'FIELD=DISTRIBUTION' per searched field")
  seen = set()
  for p in params:
    if p.field in seen:
      raise ConfigError(f"sweep.space: {p.field} is given twice")
    seen.add(p.field)
    if any(p.field == f or p.field.startswith(f + ".") for f in FIXED_PREFIXES):
      raise ConfigError(f"sweep.space: {p.field} cannot be searched (every trial shares the "
                        f"dataset and the sweep settings: {', '.join(FIXED_PREFIXES)})")
    get_field(config, p.field)
    for value in p.candidates():
      try:
        validate.validate(apply(config, {p.field: value}))
      except ConfigError as e:
        raise ConfigError(f"sweep.space {p.field}={value!r}: {e}") from None
  return params


def suggest(trial, params: list[Param]) -> dict[str, Any]:
  """The trial's value of every parameter (optuna's suggest_* API)."""
  out = {}
  for p in params:
    if p.kind == "choice":
      # Optuna stores choices as None/bool/int/float/str; tuples go through their index.
      if all(c is None or isinstance(c, (bool, int, float, str)) for c in p.choices):
        out[p.field] = trial.suggest_categorical(p.field, p.choices)
      else:
        labels = [repr(c) for c in p.choices]
        out[p.field] = p.choices[labels.index(trial.suggest_categorical(p.field, labels))]
    elif p.kind == "int":
      out[p.field] = trial.suggest_int(p.field, p.low, p.high, step=p.step or 1, log=p.log)
    else:
      out[p.field] = trial.suggest_float(p.field, p.low, p.high, log=p.log)
  return out


def grid(params: list[Param]) -> dict[str, list[Any]]:
  """The grid sampler's search space: every parameter must be a choice (or a stepped int)."""
  out = {}
  for p in params:
    if p.kind == "choice":
      out[p.field] = [c if c is None or isinstance(c, (bool, int, float, str)) else repr(c)
                      for c in p.choices]
    elif p.kind == "int" and not p.log:
      out[p.field] = list(range(p.low, p.high + 1, p.step or 1))
    else:
      raise ConfigError(f"sweep.sampler='grid': {p.field} is {p.kind}(...); a grid needs "
                        "choice(...) or int(...) parameters")
  return out


def load_config_file(path: str, arg: str = "") -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file, as `--config=path:arg` loads it."""
  name = "vidrec_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ConfigError(f"config file {path} cannot be loaded")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word


def trial_settings(sweep: ml_collections.ConfigDict) -> dict[str, Any]:
  """`sweep.trial` ('train.steps=600', ...) as {field: value}: set on every trial."""
  out = {}
  for item in sweep.trial:
    field, sep, value = item.partition("=")
    if not sep or not field.strip():
      raise ConfigError(f"sweep.trial {item!r}: expected FIELD=VALUE, e.g. 'train.steps=600'")
    out[field.strip()] = _value(value.strip())
  return out
