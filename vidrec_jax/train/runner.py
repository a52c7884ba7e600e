"""The loop every trainer shares: restore or initialise the sharded state, run the trainer's
steps, log and write summaries, halt on a NaN/Inf loss before it can be saved, checkpoint
(latest and best), answer preemption, evaluate periodically and at the end.

A trainer (vidrec_jax/train/trainers/) supplies only what differs between ways of training:
its batches, its jitted step, and its data position.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Protocol

import jax
import numpy as np
import tqdm
from absl import logging

from vidrec_jax import files
from vidrec_jax.data import pipeline
from vidrec_jax.models.partitioning import activation_sharding
from vidrec_jax.train import checkpointing
from vidrec_jax.train import distributed
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import throughput


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the message names the step."""


class Evaluation(Protocol):
  """What the runner needs of evaluation (built from `config.evals` by vidrec_jax/eval)."""

  def evaluate(self, params: Any, splits: tuple[str, ...] | None = None) -> dict[str, float]:
    ...

  def format(self, metrics: dict[str, float]) -> str:
    ...


class Summaries:
  """TensorBoard event files (tensorboardX, no TensorFlow) written by host 0 only."""

  def __init__(self, workdir: str, enabled: bool):
    self.writer = None
    if enabled:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict) -> None:
    if self.writer is None:
      return
    for k, v in scalars.items():
      if np.isfinite(v):
        self.writer.add_scalar(k.replace("@", "_at_"), v, step)
    self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


def check_finite(window: list[dict], first_step: int) -> list[dict]:
  """The window's metrics on the host, or NonFiniteLossError naming the first bad step (the
  window holds the steps after `first_step`)."""
  host = jax.device_get(window)
  losses = np.array([m["loss"] for m in host])
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise NonFiniteLossError(f"loss is {losses[bad[0]]} at step {first_step + int(bad[0]) + 1}; "
                             "stopping (the last checkpoint is intact)")
  return host


def reduce_window(window: list[dict], first_step: int) -> dict[str, float]:
  """Mean of every metric over the window, after the NaN/Inf check."""
  host = check_finite(window, first_step)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


class _Log:
  """The metrics window since the last log step, and throughput over it: `timer` starts before
  the window's first step and stops at its log step, each time at a blocking point
  (vidrec_jax/train/throughput.py), so it times the window's steps to their end on the device,
  and not the logging and evaluations between windows (the loop stops it before an evaluation
  between log steps). The first window includes compilation."""

  def __init__(self, start: int):
    self.window, self.start, self.timer = [], start, throughput.Timer()

  def scalars(self, step: int, outputs) -> dict[str, float]:
    """The window's means; the clock stops once `outputs` (the log step's state and metrics)
    are computed."""
    self.timer.stop(outputs)
    out = reduce_window(self.window, self.start)
    out["impressions_per_second"] = self.timer.per_second()
    self.window, self.start, self.timer = [], step, throughput.Timer()
    return out


OnEval = Callable[[int, dict[str, float]], None]
EARLY_STOPPED = "early_stopped"  # data-position key of the checkpoint an early stop saved
EARLY_STATE = "early_stopping"  # data key of _EarlyStop's state (best, since, last_eval)


def run(trainer, evaluation: Evaluation, workdir: str, on_eval: OnEval | None = None
        ) -> dict[str, float]:
  """Trains with `trainer` from the latest checkpoint in `workdir` (or from scratch) to
  `config.train.steps`, then evaluates; returns the final metrics (or, when preempted,
  {'preempted_at_step': step}).

  `on_eval(step, valid_metrics)` is called after every periodic evaluation (a sweep reports
  them to its pruner); an exception it raises ends the run, the latest checkpoint intact."""
  run, setup = trainer.run, trainer.setup
  t = run.train
  host0 = jax.process_index() == 0
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), t.checkpoint_every,
                                    t.keep_checkpoints, t.best_metric, t.best_mode)
  summaries = Summaries(workdir, host0)
  preemption = distributed.Preemption()
  try:
    restored = ckpt.restore(setup.abstract_state)
    state, start = ((setup.init(run.seed), 0) if restored is None
                    else (restored.state, restored.step))
    if t.early_stopping and restored is not None and (restored.data or {}).get(EARLY_STOPPED):
      # The run had stopped early: a rerun reports the same best checkpoint, it does not
      # train on (which would also reset the count of evaluations without improvement).
      logging.info("the run stopped early at step %d; evaluating its best checkpoint", start)
      stopped_at, last = None, start
    else:
      batches = trainer.batches(start, restored and restored.data)
      try:
        state, stopped_at, last = _loop(trainer, evaluation, state, start, batches, ckpt,
                                        summaries, preemption, on_eval,
                                        (restored and restored.data) or {})
      finally:
        pipeline.close(batches)  # loader workers stop before evaluation needs the CPU
    if stopped_at is not None:
      return {"preempted_at_step": float(stopped_at)}
    ckpt.wait()  # the last step is on disk before the final evaluation begins
    logging.info("final evaluation at step %d", last)
    try:
      if t.early_stopping:
        results = _evaluate_best(setup, evaluation, ckpt, state, last, preemption.raising)
      else:
        with preemption.raising():
          results = evaluation.evaluate(state.params)
        ckpt.save_best(t.steps, state, results)
    except distributed.Preempted:
      logging.warning("preempted in the final evaluation: step %d is saved in %s; rerun the "
                      "same command to evaluate it", last, ckpt.directory)
      return {"preempted_at_step": float(last)}
    ckpt.wait()
    if ckpt.best_metric and host0:
      logging.info("best checkpoint by %s: step %s in %s", ckpt.best_metric, ckpt.best_step(),
                   checkpointing.best_directory(ckpt.directory))
    results.update({f"train/{k}": v for k, v in trainer.totals().items()})
    write_results(workdir, results, evaluation, summaries, t.steps)
    return results
  finally:
    preemption.close()
    ckpt.close()
    summaries.close()


def _evaluate_best(setup, evaluation, ckpt, state, step: int, guard) -> dict[str, float]:
  """With early stopping: the last state is offered as a best candidate, then the best
  checkpoint's parameters are what the final evaluation reports. The evaluations run inside
  `guard` (a signal abandons them); saving the best candidate does not."""
  with guard():
    valid = evaluation.evaluate(state.params, ("valid",))
  ckpt.save_best(step, state, valid)
  ckpt.wait()
  best = ckpt.restore(setup.abstract_state, best=True)
  logging.info("final evaluation of the best checkpoint by %s: step %d", ckpt.best_metric,
               best.step)
  with guard():
    results = evaluation.evaluate(best.state.params)
  results["train/best_step"] = float(best.step)
  results["train/last_step"] = float(step)
  return results


class _EarlyStop:
  """Counts evaluations since the best metric last improved. Its state (with the step of the
  last evaluation counted) travels in every checkpoint, so a resumed run stops where an
  uninterrupted one would."""

  def __init__(self, metric: str, mode: str, patience: int, saved: dict | None = None):
    self.metric, self.sign, self.patience = metric, 1.0 if mode == "max" else -1.0, patience
    self.best, self.since, self.last = -np.inf, 0, 0
    if saved:  # checkpoints written before this state was saved resume with a fresh count
      self.best = -np.inf if saved["best"] is None else float(saved["best"])
      self.since, self.last = int(saved["since"]), int(saved["last_eval"])

  def saved(self) -> dict:
    return {EARLY_STATE: {"best": None if np.isinf(self.best) else float(self.best),
                          "since": self.since, "last_eval": self.last}}

  def stop(self, step: int, metrics: dict) -> bool:
    value = self.sign * metrics.get(self.metric, -np.inf)
    if value > self.best:
      self.best, self.since = value, 0
    else:
      self.since += 1
    self.last = step
    return bool(self.patience) and self.since >= self.patience


def _loop(trainer, evaluation, state, start, batches, ckpt, summaries, preemption, on_eval,
          saved: dict):
  """The training steps; returns (state, the step preempted at or None, the last step).

  At an evaluation step the evaluation comes before the periodic save, so the checkpoint holds
  the early-stopping state after it. A checkpoint saved without its step's evaluation (by a
  preemption, or as the last step of a shorter run) is evaluated first when resumed."""
  setup, t = trainer.setup, trainer.run.train
  early = _EarlyStop(t.best_metric, t.best_mode, t.early_stopping, saved.get(EARLY_STATE))
  host0 = jax.process_index() == 0
  step_fn = trainer.step_fn()
  log = _Log(start)

  def position(step: int, **extra) -> dict:
    return dict(trainer.position(step), **early.saved(), **extra)

  def evaluate(step: int, state) -> bool:
    """The periodic evaluation of `state` at `step`; True when it stops the run early."""
    valid = evaluation.evaluate(state.params, ("valid",))
    ckpt.save_best(step, state, valid)
    summaries.write(step, valid)
    if host0:
      logging.info("step %d eval:\n%s", step, evaluation.format(valid))
    if on_eval is not None:
      on_eval(step, valid)
    if not early.stop(step, valid):
      return False
    ckpt.save(step, state, position(step, **{EARLY_STOPPED: True}), force=True, replace=True)
    logging.info("early stopping at step %d: %s has not improved for %d evaluations",
                 step, t.best_metric, t.early_stopping)
    return True

  def evaluates(step: int) -> bool:
    return bool(t.eval_every) and step % t.eval_every == 0 and step != t.steps

  if start and evaluates(start) and early.last != start and evaluate(start, state):
    return state, None, start
  bar = tqdm.tqdm(total=t.steps, initial=start, desc="train", disable=not host0,
                  mininterval=2.0)
  try:
    for step in range(start + 1, t.steps + 1):
      if not log.timer.running:
        # The window starts at a blocking point, once the state it trains from is ready, and
        # stops at its log step; no step waits in between, so training stays asynchronous.
        log.timer.start(state)
      batch = next(batches)
      log.timer.add(trainer.observe(batch) * jax.process_count())
      with activation_sharding(setup.mesh, setup.rules):
        state, metrics = step_fn(state, mesh_lib.shard_batch(batch, setup.mesh, setup.rules))
      log.window.append(metrics)
      bar.update(1)
      if step % t.log_every == 0 or step == t.steps:
        scalars = dict(log.scalars(step, (state, metrics)), **trainer.totals())
        if host0:
          summaries.write(step, scalars)
          bar.set_postfix(loss=f"{scalars['loss']:.4f}")
          logging.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in
                                                      sorted(scalars.items())))
      stop = preemption.should_stop()
      if stop or step == t.steps or ckpt.manager.should_save(step):
        check_finite(log.window, log.start)  # never save the state of a NaN step
      if stop:
        ckpt.save(step, state, position(step), force=True)
        ckpt.wait()
        logging.warning("preempted: saved step %d in %s; rerun the same command to resume",
                        step, ckpt.directory)
        return state, step, step
      if evaluates(step):
        if log.timer.running:  # not a log step: the clocks stop here, evaluation is not training
          log.timer.stop((state, metrics))
          trainer.totals()
        if evaluate(step, state):
          return state, None, step  # the early stop saved this step
      ckpt.save(step, state, position(step), force=step == t.steps)
  finally:
    bar.close()
  return state, None, t.steps


def write_results(workdir: str, results: dict, evaluation: Evaluation, summaries, step: int
                  ) -> None:
  """Host 0 writes WORKDIR/eval/metrics.json and prints the metric tables."""
  if jax.process_index() != 0:
    return
  out_dir = os.path.join(workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "metrics.json")
  files.write_json(path, {k: (None if not np.isfinite(v) else v) for k, v in results.items()})
  if summaries is not None:
    summaries.write(step, results)
  print(evaluation.format(results), flush=True)
  print(f"metrics written to {path}", flush=True)
