"""Evaluators built from the config (`config.evals`, as big_vision's `config.evals`): each entry
names a registered evaluator `type` and its keyword arguments; `Evaluation` runs them all on one
set of parameters, sharing the catalog and user encodings, and prints their tables.

  c.evals = dict(ranking=dict(type="ranking", splits=("valid", "test"), ndcg_k=10),
                 retrieval=dict(type="retrieval", query_seed=1))

Adding an evaluator: one file in this package with an `Evaluator` subclass registered in
`EVALUATORS` (its typed `__init__` keyword arguments are the config entry's; the registry finds
the file by itself) and a test; one outside the library is a module named in `config.imports`.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import jax

from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.eval.encode import Encoder
from vidrec_jax.eval.encode import Encodings
from vidrec_jax.registry import Registry
from vidrec_jax.run_spec import Section
from vidrec_jax.train.context import Context


class Evaluator(abc.ABC):
  """Metrics of one kind for a run; built once per run with its config entry's arguments."""

  models: ClassVar[tuple[str, ...]] = ("two_tower",)  # the registered models it evaluates
  # Whether it works with user towers that read a watch history (sasrec, din), whose user
  # vector depends on the impression's time (and din's on the candidate too).
  history_users: ClassVar[bool] = True

  def __init__(self, ctx: Context):
    self.ctx = ctx

  @classmethod
  def check(cls, field: str, source, **kwargs) -> None:
    """Raises config_checks.ConfigError on a bad argument of the `config.evals` entry `field`,
    for the registered dataset `source` (a DatasetSource)."""
    del field, source, kwargs

  @abc.abstractmethod
  def evaluate(self, enc: Encodings, splits: tuple[str, ...] | None) -> dict[str, float]:
    """Flat metrics; `splits` narrows split-based evaluators (None: their configured ones)."""

  def table(self, metrics: dict[str, float]) -> list[str]:
    """Lines of this evaluator's printed table (empty when it has nothing to show)."""
    del metrics
    return []


EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator", package=__name__)


def evaluator_kwargs(cls: type[Evaluator], name: str, entry) -> dict:
  """The typed keyword arguments of a `config.evals` entry (without `type`)."""
  entry = {k: v for k, v in dict(entry).items() if k != "type"}
  return typed_kwargs(cls.__init__, entry, f"evals.{name}", ("ctx",))


class Evaluation:
  """Every evaluator of `config.evals` over one run; `evaluate(params)` returns their metrics."""

  def __init__(self, ctx: Context, evals: Section):
    self.encoder = Encoder(ctx, show_progress=jax.process_index() == 0)
    self.evaluators = []
    for name, entry in evals.items():
      cls = EVALUATORS.get(entry.type)
      self.evaluators.append(cls(ctx, **evaluator_kwargs(cls, name, entry)))

  def evaluate(self, params, splits: tuple[str, ...] | None = None) -> dict[str, float]:
    enc = Encodings(self.encoder, params)
    out: dict[str, float] = {}
    for ev in self.evaluators:
      out.update(ev.evaluate(enc, splits))
    return out

  def format(self, metrics: dict[str, float]) -> str:
    blocks = [ev.table(metrics) for ev in self.evaluators]
    return "\n\n".join("\n".join(b) for b in blocks if b)


def table(title: str, rows: list[str], cols: tuple[str, ...], metrics: dict) -> list[str]:
  """A fixed-width table of `metrics[f'{row}/{col}']`."""
  lines = [title.ljust(18) + "".join(c.rjust(15) for c in cols)]
  for row in rows:
    vals = [metrics.get(f"{row}/{c}", float("nan")) for c in cols]
    lines.append(row.ljust(18) + "".join(
        (f"{v:15.0f}" if c == "count" else f"{v:15.4f}") for c, v in zip(cols, vals)))
  return lines

