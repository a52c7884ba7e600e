"""Trainer registry: ways of training that share one loop (vidrec_jax/train/runner.py) for
checkpointing, preemption, NaN halting, summaries, evaluation and the mesh.

`config.train.trainer` names a registered trainer. A trainer says only what differs: its
batches from a resume position, its jitted step, the data position it saves, what a batch
counts for. Adding a trainer: one file in this package with a `Trainer` subclass registered
in `TRAINERS` (the registry finds the file by itself) and a test (tests/extension_test.py
registers one from a test file); one outside the library is a module named in
`config.imports`. The RL experiment's `reinforce` trainer is in vidrec_jax/rl/trainer.py.
"""

from __future__ import annotations

import abc
from typing import Callable, ClassVar, Iterator

from vidrec_jax.config_checks import Needs
from vidrec_jax.config_checks import signature_defaults
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.config_io import PartTerms
from vidrec_jax.data.datasets import DATASETS
from vidrec_jax.models import recommender
from vidrec_jax.registry import Registry
from vidrec_jax.train import checkpointing


class Trainer(abc.ABC):
  """Base of trainers, built from the run's `train.context.Context`. `setup` (the model on the
  mesh: abstract state, shardings, init) is the context's unless a trainer sets its own."""

  models: ClassVar[tuple[str, ...]] = ("two_tower",)  # the registered models it can train
  # True: the trainer runs inside an experiment of its own that builds its context (the RL
  # experiment, vidrec_jax/rl/experiment.py, for rl/trainer.py), not on a dataset's Context.
  runs_experiment: ClassVar[bool] = False

  def __init__(self, ctx):
    """A trainer with settings of its own takes them as typed keyword arguments after `ctx`
    (`def __init__(self, ctx, *, temperature: float = 1.0)`): they come from the
    `train.trainer_args` section, checked against the signature, and `validate` checks their
    values; one with a default may be left out (and is recorded at it)."""
    self.ctx, self.run, self.setup = ctx, ctx.run, ctx.setup

  @classmethod
  def validate(cls, **settings) -> None:
    """Raises ConfigError on bad values of its settings (`train.trainer_args`, typed)."""
    del settings

  @classmethod
  def needs(cls, **settings) -> Needs:
    """What it needs of other config sections (config_checks.Needs), checked by validate.py."""
    del settings
    return []

  @abc.abstractmethod
  def batches(self, start_step: int, saved_position: dict | None) -> Iterator[dict]:
    """Host batches for steps start_step + 1, ...; `saved_position` is what `position`
    returned for the restored checkpoint (None for a fresh run or an old checkpoint). The
    runner calls the iterator's `close()`, if it has one, when training ends."""

  @abc.abstractmethod
  def step_fn(self) -> Callable:
    """The jitted `(state, sharded batch) -> (state, metrics)`; metrics include `loss`."""

  def position(self, step: int) -> dict:
    """The data position saved with the checkpoint at `step`: the batches drawn so far, with
    the `data.batch_size` and `data.shuffle_seed` that ordered them (a resume with others is
    refused by `checkpointing.check_data_position`)."""
    d = self.run.data
    return checkpointing.data_position(step, d.batch_size, d.shuffle_seed)

  def observe(self, batch: dict) -> float:
    """Called with each host batch before its step; returns the examples it counts for."""
    del batch
    return 0.0

  def totals(self) -> dict[str, float]:
    """Running totals logged with the metrics and reported as `train/<name>` at the end. The
    runner calls it at its blocking points, once it has waited for the step just run (at each
    log step, the last step among them, and before an evaluation between log steps), and once
    more with the final results: a throughput can stop its clock there (trainers/next_item.py);
    between them the steps run asynchronously."""
    return {}


# The RL trainer lives with the RL code it reads (rl/trainer.py, a layer above): discovery
# imports it by name, so this package does not import it.
TRAINERS: Registry[type[Trainer]] = Registry("trainer",
                                             package=(__name__, "vidrec_jax.rl.trainer"))


def settings(config) -> dict:
  """The configured trainer's typed settings from `train.trainer_args` (a ConfigError when they
  do not fit its signature)."""
  cls = TRAINERS.get(config.train.trainer)
  return typed_kwargs(cls.__init__, config.train.trainer_args, "train.trainer_args", ("ctx",))


def build(ctx) -> Trainer:
  """The trainer `train.trainer` of the run's context, with its settings."""
  return TRAINERS.get(ctx.run.train.trainer)(ctx, **settings(ctx.run))


def record_terms(config) -> PartTerms:
  """How the run's config is recorded (vidrec_jax/config_io.py): the model's terms and the
  trainer's signature defaults."""
  model = recommender.record_terms(config)
  defaults = dict(model.defaults)
  defaults.update(DATASETS.get(config.data.dataset.name).record_defaults())
  defaults.update(signature_defaults(TRAINERS.get(config.train.trainer).__init__,
                                     "train.trainer_args", ("ctx",)))
  return PartTerms(defaults=defaults, inert=model.inert)
