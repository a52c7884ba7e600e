"""Orbax checkpoints of the train state and the data position; the best one by an eval metric.

The data position is saved as plain numbers (batches consumed, global batch size, shuffle seed),
not as Grain's per-process iterator state: the training stream is a pure function of the batch
index (see data/pipeline.py), so a checkpoint written by N processes resumes on any other number
of processes or devices at exactly the next global batch.
"""

from __future__ import annotations

import dataclasses
import os

import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class DataPositionError(ValueError):
  """The checkpoint's data stream differs from the config's; the message is one line."""


@dataclasses.dataclass
class Restored:
  state: object
  step: int
  data: dict | None  # the saved data position; None for checkpoints saved without one


def data_position(step: int, global_batch: int, shuffle_seed: int) -> dict:
  return {"batches": int(step), "global_batch": int(global_batch),
          "shuffle_seed": int(shuffle_seed)}


def check_data_position(saved: dict | None, expected: dict) -> int:
  """The batch index to resume the stream at, or DataPositionError when the saved stream is
  another one (a changed batch size or shuffle seed would silently reorder the data)."""
  if saved is None:
    return expected["batches"]
  for key, flag in (("global_batch", "data.batch_size"), ("shuffle_seed", "data.shuffle_seed")):
    if saved[key] != expected[key]:
      raise DataPositionError(
          f"the checkpoint was trained with {flag}={saved[key]} but the config has "
          f"{expected[key]}; resume with the same value or use a new workdir")
  return saved["batches"]


def _first_line(e: Exception) -> str:
  return str(e).splitlines()[0] if str(e) else ""


class Checkpointer:
  """Saves every `every` steps keeping the newest `keep`; restores onto the target shardings.

  With `best_metric`, a second manager under `<directory>_best` keeps the one checkpoint whose
  eval metric is best so far (`save_best`), for `--mode=eval --checkpoint=best`.
  Orbax saves asynchronously: `save` returns after the device-to-host copy.
  """

  def __init__(self, directory: str, every: int, keep: int, best_metric: str = "",
               best_mode: str = "max"):
    # Orbax restores from absolute paths only: a relative --workdir is taken from the current
    # directory (a URL such as gs://... is left as it is).
    if "://" not in directory:
      directory = os.path.abspath(directory)
    self.directory = directory
    self.manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=max(every, 1), create=True))
    self.best_metric = best_metric
    self.best = None
    if best_metric:
      self.best = ocp.CheckpointManager(
          best_directory(directory), options=ocp.CheckpointManagerOptions(
              max_to_keep=1, best_fn=lambda m: m[best_metric], best_mode=best_mode,
              keep_checkpoints_without_metrics=False, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  @staticmethod
  def _items(state, data: dict | None) -> dict:
    items = {"state": ocp.args.StandardSave(state)}
    if data is not None:
      items["data"] = ocp.args.JsonSave(data)
    return items

  def save(self, step: int, state, data: dict | None = None, force: bool = False,
           replace: bool = False) -> bool:
    """Saves `step` (when due, or `force`); with `replace`, a checkpoint of the same step
    already on disk is replaced (the early stop's, which marks the step in its data)."""
    if replace and step in self.manager.all_steps():
      self.manager.wait_until_finished()
      self.manager.delete(step)
    return self.manager.save(step, args=ocp.args.Composite(**self._items(state, data)),
                             force=force)

  def save_best(self, step: int, state, metrics: dict[str, float]) -> None:
    """Offers the state evaluated at `step`; Orbax keeps it only if its metric is the best."""
    if self.best is None or self.best_metric not in metrics:
      return
    if step in self.best.all_steps():  # e.g. the final eval again after resuming a finished run
      return
    self.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                   metrics={k: float(v) for k, v in metrics.items()}, force=True)

  def best_step(self) -> int | None:
    return self.best.best_step() if self.best is not None else None

  def restore(self, abstract_state, step: int | None = None, best: bool = False
              ) -> Restored | None:
    """Restores `step` (default: the newest readable one, or the best with `best`) into arrays
    laid out as `abstract_state`'s shardings: each process reads only its shards.

    Returns None when there is no checkpoint. Without an explicit `step`, a checkpoint that
    cannot be read (a crash in the middle of a save, a truncated file) is reported and the next
    older one is tried.
    """
    manager = self.best if best else self.manager
    if manager is None:
      raise ValueError("restore(best=True) needs a Checkpointer with best_metric")
    if step is not None:
      steps = [step]
    elif best:
      steps = [s for s in [manager.best_step()] if s is not None]
    else:
      steps = sorted(manager.all_steps(), reverse=True)
    for i, s in enumerate(steps):
      items = {"state": ocp.args.StandardRestore(abstract_state)}
      has_data = (epath.Path(manager.directory) / str(s) / "data").exists()  # local or gs://
      if has_data:
        items["data"] = ocp.args.JsonRestore()
      try:
        restored = manager.restore(s, args=ocp.args.Composite(**items))
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: fall back
        if step is not None or i + 1 == len(steps):
          raise
        logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); falling back to "
                        "step %d", s, manager.directory, type(e).__name__, _first_line(e),
                        steps[i + 1])
        continue
      logging.info("restored checkpoint at step %d from %s", s, manager.directory)
      return Restored(restored["state"], s, restored["data"] if has_data else None)
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()

  def close(self) -> None:
    for m in (self.manager, self.best):
      if m is not None:
        m.wait_until_finished()
        m.close()


def best_directory(directory: str) -> str:
  return directory.rstrip("/") + "_best"


def restore_for_serving(directory: str, train, abstract_state, which: str, purpose: str
                        ) -> Restored:
  """The latest (or, with which='best', the best) checkpoint in `directory`, restored onto
  `abstract_state` with `train`'s (a TrainSpec) checkpoint settings; a FileNotFoundError ends
  with `purpose` ('to evaluate') when there is none."""
  ckpt = Checkpointer(directory, train.checkpoint_every, train.keep_checkpoints,
                      train.best_metric, train.best_mode)
  try:
    if which == "best" and ckpt.best is None:
      raise FileNotFoundError("--checkpoint=best needs config.train.best_metric to be set")
    restored = ckpt.restore(abstract_state, best=which == "best")
  finally:
    ckpt.close()
  if restored is None:
    where = directory if which != "best" else best_directory(directory)
    raise FileNotFoundError(f"no checkpoint in {where} {purpose}")
  return restored
