"""What each `--mode` does, above the train and eval stages: resolve the config into the run's
typed, frozen settings (vidrec_jax/run_spec.py; below this file nothing reads the ConfigDict),
build the run's context, pick the registered trainer, build the evaluators of `config.evals`, and
hand them to the shared loop. The config of record (vidrec_jax/config_io.py) is checked and
written here.

  train     prepare data and caches, train (resuming from WORKDIR), evaluate
  eval      evaluate the latest (or best) checkpoint
  generate  write the dataset only
  extract   write the caches of the pretrained parts (backbone features, title embeddings)
  rl        the RL experiment: simulator, logged slates, REINFORCE policies (vidrec_jax/rl/)
"""

from __future__ import annotations

import os

import jax
import ml_collections
from absl import logging

from vidrec_jax import config_io
from vidrec_jax import run_spec
from vidrec_jax.eval.evaluators import Evaluation
from vidrec_jax.models import encoders
from vidrec_jax.train import checkpointing
from vidrec_jax.train import distributed
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import runner
from vidrec_jax.train import trainers
from vidrec_jax.train import workdir as workdir_lib
from vidrec_jax.train.context import Context
from vidrec_jax.train.context import make_context
from vidrec_jax.train.trainers import TRAINERS


def _has_checkpoint(workdir: str) -> bool:
  path = os.path.join(workdir, "checkpoints")
  return os.path.isdir(path) and any(n.isdigit() for n in os.listdir(path))


def _log_start(ctx: Context, config: ml_collections.ConfigDict) -> None:
  s = ctx.setup
  logging.info("config:\n%s", config)
  logging.info("mesh %s over %d devices (%d per process, %d processes)", dict(s.mesh.shape),
               s.mesh.size, jax.local_device_count(), jax.process_count())
  logging.info("dataset %s: users %d, training videos %d (+1 OOV row), catalog %d videos",
               ctx.dataset.name, ctx.user_vocab.size, ctx.video_vocab.size,
               len(ctx.dataset.catalog))
  logging.info("parameters:\n%s",
               mesh_lib.param_table(s.abstract_state.params, s.param_shardings))


def train(config: ml_collections.ConfigDict, workdir: str,
          on_eval: runner.OnEval | None = None) -> dict[str, float]:
  """Trains with the registered trainer `config.train.trainer` (resuming from the latest
  checkpoint in workdir), then evaluates; returns the metrics. `on_eval(step, valid)` sees
  every periodic evaluation (vidrec_jax/train/runner.py)."""
  if TRAINERS.get(config.train.trainer).runs_experiment:
    return rl(config, workdir)
  terms = trainers.record_terms(config)
  if _has_checkpoint(workdir):
    config_io.check(workdir, config, terms)
  # The dataset and caches first: a run refused by them (a data dir built with other
  # settings, data/build.py) leaves the workdir's record as it was.
  ctx = make_context(run_spec.resolve(config), workdir)
  distributed.host0_then_barrier("vidrec_config_written",
                                 lambda: config_io.write(workdir, config, terms))
  if ctx.host0:
    _log_start(ctx, config)
  trainer = trainers.build(ctx)
  return runner.run(trainer, Evaluation(ctx, ctx.run.evals), workdir, on_eval)


def rl(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The RL experiment of `config.rl` (vidrec_jax/rl/experiment.py): logs, policies trained
  with the registered `reinforce` trainer, simulator returns, WORKDIR/eval/rl.json."""
  # pylint: disable=g-import-not-at-top
  from vidrec_jax.rl import config as rl_config
  from vidrec_jax.rl import experiment as rl_experiment
  # pylint: enable=g-import-not-at-top
  run = run_spec.resolve(config)
  rl_config.validate(run)
  terms = trainers.record_terms(config)
  config_io.check(workdir, config, terms)
  distributed.host0_then_barrier("vidrec_rl_config",
                                 lambda: config_io.write(workdir, config, terms))
  return rl_experiment.run(run, workdir)


def restore_policy(config: ml_collections.ConfigDict, workdir: str, which: str, policy: str,
                   seed: int | None):
  """One trained policy of the RL experiment in `workdir` (rl/serve.py `PolicyRun`): the latest
  (or best) checkpoint of `policy` on seed `seed` (None: the first of rl.seeds)."""
  from vidrec_jax.rl import serve  # pylint: disable=g-import-not-at-top
  config_io.check(workdir, config, trainers.record_terms(config))
  return serve.restore(run_spec.resolve(config), workdir, which, policy, seed)


def restore(config: ml_collections.ConfigDict, workdir: str, which: str, purpose: str
            ) -> tuple[Context, dict, int]:
  """The run's context and the latest (or, with which='best', the best) checkpoint's
  parameters and step; `purpose` completes the missing-checkpoint error ('evaluate')."""
  config_io.check(workdir, config, trainers.record_terms(config))
  ctx = make_context(run_spec.resolve(config), workdir, prepare=False)
  restored = checkpointing.restore_for_serving(
      os.path.join(workdir, "checkpoints"), ctx.run.train, ctx.setup.abstract_state, which,
      f"to {purpose}")
  return ctx, restored.state.params, int(restored.step)


def evaluate(config: ml_collections.ConfigDict, workdir: str, which: str = "latest"
             ) -> dict[str, float]:
  """Restores the latest (or, with which='best', the best) checkpoint in workdir and evaluates
  it with `config.evals`."""
  ctx, params, step = restore(config, workdir, which, "evaluate")
  evaluation = Evaluation(ctx, ctx.run.evals)
  results = evaluation.evaluate(params)
  runner.write_results(workdir, results, evaluation, None, step)
  return results


def generate(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the configured dataset into its data dir (WORKDIR/data or config.data.data_dir)."""
  run = run_spec.resolve(config)
  wd = workdir_lib.Workdir.of(run, workdir)
  distributed.host0_then_barrier(
      "vidrec_generated", lambda: workdir_lib.source(run).prepare(wd.data, run.data.dataset))


def extract(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the caches of the model's pretrained parts: the backbone's frame features (sharded
  over processes and devices) and the frozen text tower's title embeddings."""
  run = run_spec.resolve(config)
  wd = workdir_lib.Workdir.of(run, workdir)
  workdir_lib.prepare_dataset(run, wd)
  dataset = workdir_lib.load_dataset(run, wd)
  if encoders.extracts_features(run.model):
    from vidrec_jax.train import extract as extract_lib  # pylint: disable=g-import-not-at-top
    extract_lib.extract(run, dataset, wd.features)
  workdir_lib.prepare_text_cache(run, wd, dataset)
  form = encoders.flow_cache_form(run.model)
  if form is not None:  # every process estimates and writes a shard of the videos
    from vidrec_jax.train import extract as extract_lib  # pylint: disable=g-import-not-at-top
    extract_lib.extract_flow(dataset.catalog, run.data, wd.flow, form)
