"""Optuna studies over config overrides: every trial is a real training run in its own workdir.

  WORKDIR/
    config.json          the sweep's config of record (a resumed sweep must match it)
    study.db             the study (SQLite, default) or study.journal (`sweep.storage='journal'`)
    data/ features/ ...  the dataset and caches, written once and shared by every trial
    trials/0003/         trial 3: a normal run workdir (config.json, checkpoints, eval/, ...)
    best_config.py       the best trial as a config file: `--config=WORKDIR/best_config.py`
    trials.json          every trial: number, state, params, value, test value, error

Each trial reports `config.sweep.metric` at every periodic evaluation (`train.eval_every`) to the
pruner. A trial that raises (a bad combination, a NaN loss) is recorded as failed with its error
and the study goes on. A sweep killed mid-trial resumes: finished trials are kept, the
interrupted one (still RUNNING in the storage, its process gone) is marked failed and re-run
with the same parameters in the same workdir, so it resumes from its last checkpoint. Several
hosts share one study through an RDB URL (`sweep.storage='postgresql://...'` or a shared
SQLite file) or a journal file on a shared disk; with an RDB storage a host that dies is noticed
by its missed heartbeats and its trial is re-run by another host. storage.py holds the
storages and this recovery.
"""

from __future__ import annotations

import math
import os
import socket
from typing import Any, Callable

import ml_collections
import optuna
import tqdm
from absl import logging

from vidrec_jax import config_io
from vidrec_jax import files
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.registry import Registry
from vidrec_jax.tuning import space as space_lib
from vidrec_jax.tuning import storage as storage_lib

# name -> factory(sweep section, params) -> optuna sampler / pruner.
SAMPLERS: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("sampler")
PRUNERS: Registry[Callable[..., optuna.pruners.BasePruner]] = Registry("pruner")

SAMPLERS.register("tpe", lambda s, params: optuna.samplers.TPESampler(
    seed=s.seed, n_startup_trials=s.startup_trials))
SAMPLERS.register("random", lambda s, params: optuna.samplers.RandomSampler(seed=s.seed))
SAMPLERS.register("grid", lambda s, params: optuna.samplers.GridSampler(
    space_lib.grid(params), seed=s.seed))
PRUNERS.register("median", lambda s: optuna.pruners.MedianPruner(
    n_startup_trials=s.startup_trials, n_warmup_steps=0))
PRUNERS.register("halving", lambda s: optuna.pruners.SuccessiveHalvingPruner())
PRUNERS.register("none", lambda s: optuna.pruners.NopPruner())


class SweepInterrupted(BaseException):
  """The sweep was asked to stop (SIGTERM, Ctrl-C) mid-trial; the trial stays RUNNING so that
  the next run of the same command re-runs it from its checkpoint."""


def validate(config: ml_collections.ConfigDict) -> list[space_lib.Param]:
  """Checks the sweep section; returns the parsed search space."""
  s = config.sweep
  for registry, name, field in ((SAMPLERS, s.sampler, "sweep.sampler"),
                                (PRUNERS, s.pruner, "sweep.pruner")):
    if name not in registry:
      raise ConfigError(f"{field}={name!r}: registered: {', '.join(registry.names())}")
  if s.mode not in ("max", "min"):
    raise ConfigError(f"sweep.mode={s.mode!r}: allowed: max, min")
  if not s.metric.startswith("valid/"):
    raise ConfigError(f"sweep.metric={s.metric!r}: expected a valid-split metric "
                      "('valid/...'); trials are chosen on valid, reported on test")
  base = space_lib.apply(config, space_lib.trial_settings(s))
  if not base.train.eval_every and s.pruner != "none":
    raise ConfigError("sweep.pruner needs intermediate values: set train.eval_every > 0 in "
                      "sweep.trial (e.g. 'train.eval_every=100'), or sweep.pruner='none'")
  params = space_lib.parse(base, s.space)
  if s.sampler == "grid":
    space_lib.grid(params)
  return params


def counts(study: optuna.Study) -> dict[str, int]:
  """Finished trials by state; a failed trial that was re-run counts as nothing."""
  trials = study.get_trials(deepcopy=False)
  retried = {t.user_attrs.get("retry_of") for t in trials}
  out = {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "retried": 0}
  for t in trials:
    if t.state == optuna.trial.TrialState.FAIL and t.number in retried:
      out["retried"] += 1
    elif t.state == optuna.trial.TrialState.COMPLETE:
      out["complete"] += 1
    elif t.state == optuna.trial.TrialState.PRUNED:
      out["pruned"] += 1
    elif t.state == optuna.trial.TrialState.FAIL:
      out["failed"] += 1
    elif t.state == optuna.trial.TrialState.RUNNING:
      out["running"] += 1
  out["done"] = out["complete"] + out["pruned"] + out["failed"]
  return out


def _one_line(e: BaseException) -> str:
  return f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]


class Sweep:
  """One study in `root` over `config.sweep.space`."""

  def __init__(self, config: ml_collections.ConfigDict, root: str, base_file: str = "",
               overrides: dict[str, Any] | None = None):
    self.config, self.root = config, root
    self.sweep = config.sweep
    self.params = validate(config)
    self.base_file, self.overrides = base_file, dict(overrides or {})
    self.test_metric = "test/" + self.sweep.metric[len("valid/"):]

  # --- set-up ----------------------------------------------------------------------------------

  def _shared(self) -> dict[str, Any]:
    """Writes the dataset and caches once, as a run's context does; returns the data fields
    every trial points at."""
    # pylint: disable=g-import-not-at-top
    from vidrec_jax.train import context as context_lib
    from vidrec_jax.train import workdir as workdir_lib
    # pylint: enable=g-import-not-at-top
    wd = workdir_lib.Workdir.of(self.config, self.root)
    context_lib.prepare_data(self.config, wd)
    return {"data.data_dir": wd.data, **context_lib.cache_fields(self.config, wd)}

  def _record_terms(self) -> config_io.PartTerms:
    """The base config's part defaults and inert fields, as every run records them."""
    from vidrec_jax.train import trainers  # pylint: disable=g-import-not-at-top
    return trainers.record_terms(self.config)

  def _check_resume(self) -> None:
    """A resumed study must search the same space the same way (and train the same model)."""
    path = os.path.join(self.root, config_io.CONFIG_JSON)
    if not os.path.exists(path):
      return
    config_io.check(self.root, self.config, self._record_terms())
    saved, now = files.read_json(path)["sweep"], config_io.resolved(self.config)["sweep"]
    changed = [k for k in ("space", "trial", "metric", "mode", "sampler", "pruner", "study_name")
               if saved.get(k) != now[k]]
    if changed:
      raise config_io.ConfigChangedError(
          f"{path} records a sweep with other settings ({', '.join(f'sweep.{k}' for k in changed)}"
          "); resume it with the recorded values or use a new workdir")

  def study(self) -> optuna.Study:
    sampler = SAMPLERS.get(self.sweep.sampler)(self.sweep, self.params)
    pruner = PRUNERS.get(self.sweep.pruner)(self.sweep)
    direction = "maximize" if self.sweep.mode == "max" else "minimize"
    return optuna.create_study(storage=storage_lib.make(self.sweep, self.root),
                               study_name=self.sweep.study_name, sampler=sampler,
                               pruner=pruner, direction=direction, load_if_exists=True)

  # --- trials ----------------------------------------------------------------------------------

  def _objective(self, trial: optuna.Trial, shared: dict[str, Any]) -> float:
    values = space_lib.suggest(trial, self.params)
    workdir = trial.user_attrs.get("workdir") or os.path.join(
        self.root, "trials", f"{trial.number:04d}")
    trial.set_user_attr("workdir", workdir)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    metric = self.sweep.metric

    def on_eval(step: int, valid: dict[str, float]) -> None:
      value = valid.get(metric, math.nan)
      if math.isfinite(value):
        trial.report(value, step)
      if trial.should_prune():
        raise optuna.TrialPruned(f"{metric}={value:.4f} at step {step}")

    try:
      config = space_lib.apply(
          self.config, {**space_lib.trial_settings(self.sweep), **shared, **values})
      from vidrec_jax import validate as validate_lib  # pylint: disable=g-import-not-at-top
      validate_lib.validate(config)
      from vidrec_jax import experiment  # pylint: disable=g-import-not-at-top
      results = experiment.train(config, workdir, on_eval=on_eval)
      if "preempted_at_step" in results:
        raise SweepInterrupted(f"trial {trial.number} preempted at step "
                               f"{int(results['preempted_at_step'])}")
      value = results.get(metric)
      if value is None or not math.isfinite(value):
        raise ValueError(f"{metric} is {value} (the run's metrics: "
                         f"{', '.join(sorted(k for k in results if k.startswith('valid/')))})")
      test = results.get(self.test_metric)
      if test is not None and math.isfinite(test):
        trial.set_user_attr(self.test_metric, float(test))
      return float(value)
    except optuna.TrialPruned:
      raise
    except KeyboardInterrupt:
      # Ctrl-C: leave the trial RUNNING, so that the next run re-runs it from its checkpoint
      # (optuna would record it as failed).
      raise SweepInterrupted(f"trial {trial.number} interrupted") from None
    except Exception as e:
      trial.set_user_attr("error", _one_line(e))
      logging.warning("trial %d failed: %s", trial.number, _one_line(e))
      raise

  def run(self, n_trials: int, progress: bool = True) -> dict[str, int]:
    """Runs trials until the study holds `n_trials` finished ones (complete, pruned or failed);
    resumes a study already in `root`. Returns the final counts."""
    os.makedirs(self.root, exist_ok=True)
    self._check_resume()
    config_io.write(self.root, self.config, self._record_terms())
    study = self.study()
    rerun = storage_lib.recover_interrupted(study)
    if rerun:
      logging.warning("re-running interrupted trial(s) %s", rerun)
    shared = self._shared()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    c = counts(study)
    bar = tqdm.tqdm(total=n_trials, initial=min(c["done"], n_trials), desc="sweep",
                    disable=not progress, position=0, leave=True)
    try:
      while True:
        c = counts(study)
        self._postfix(bar, study, c)
        running_elsewhere = c["running"]
        if c["done"] + running_elsewhere >= n_trials:
          break
        study.optimize(lambda t: self._objective(t, shared), n_trials=1, catch=(Exception,),
                       gc_after_trial=True)
        bar.update(min(counts(study)["done"], n_trials) - bar.n)
        self.write_outputs(study)
    finally:
      bar.close()
    self.write_outputs(study)
    return counts(study)

  def _postfix(self, bar, study, c) -> None:
    best = self.best(study)
    bar.set_postfix(complete=c["complete"], pruned=c["pruned"], failed=c["failed"],
                    best="–" if best is None else f"{best.value:.4f}")

  @staticmethod
  def best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
      return None
    return study.best_trial

  # --- outputs ---------------------------------------------------------------------------------

  def write_outputs(self, study: optuna.Study) -> None:
    rows = []
    for t in study.get_trials(deepcopy=False):
      rows.append(dict(number=t.number, state=t.state.name, params=t.params, value=t.value,
                       test=t.user_attrs.get(self.test_metric), error=t.user_attrs.get("error"),
                       retry_of=t.user_attrs.get("retry_of"),
                       workdir=t.user_attrs.get("workdir"),
                       seconds=(t.datetime_complete - t.datetime_start).total_seconds()
                       if t.datetime_complete and t.datetime_start else None,
                       intermediate={str(k): v for k, v in t.intermediate_values.items()}))
    files.write_json(os.path.join(self.root, "trials.json"), dict(
        metric=self.sweep.metric, test_metric=self.test_metric, mode=self.sweep.mode,
        study=self.sweep.study_name, counts=counts(study), trials=rows))
    best = self.best(study)
    if best is not None:
      from vidrec_jax.tuning import best_config  # pylint: disable=g-import-not-at-top
      best_config.write(os.path.join(self.root, "best_config.py"), best, self)


def run_sweep(config, workdir: str, trials: int | None = None, base_file: str = "",
              overrides: dict | None = None, progress: bool = True) -> dict[str, int]:
  """The sweep of `config` in `workdir`; returns the counts of finished trials."""
  sweep = Sweep(config, workdir, base_file, overrides)
  try:
    done = sweep.run(trials or config.sweep.trials, progress)
  except SweepInterrupted as e:
    logging.warning("%s; rerun the same command to resume", e)
    return counts(sweep.study())
  print(f"sweep: {done['complete']} complete, {done['pruned']} pruned, {done['failed']} "
        f"failed; trials in {os.path.join(workdir, 'trials.json')}", flush=True)
  best = os.path.join(workdir, "best_config.py")
  if os.path.exists(best):
    print(f"best config: {best}", flush=True)
  return done
