"""Orbax checkpoints of the train state together with the Grain iterator position."""

from __future__ import annotations

import grain
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
  """Saves every `every` steps keeping `keep`; restores the latest onto the target shardings."""

  def __init__(self, directory: str, every: int, keep: int):
    self.manager = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=max(every, 1), create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iter=None, force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore(self, abstract_state, data_iter=None, step: int | None = None):
    """Restores `step` (default: the newest readable one) into arrays laid out as
    `abstract_state`'s shardings.

    Returns None when there is no checkpoint. `data_iter`, if given, is moved to the saved
    position in place. Without an explicit `step`, a checkpoint that cannot be read (a crash
    in the middle of a save, a truncated file) is reported and the next older one is tried.
    """
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    for i, s in enumerate(steps):
      items = {"state": ocp.args.StandardRestore(abstract_state)}
      if data_iter is not None:
        items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(**items))
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: fall back
        if step is not None or i + 1 == len(steps):
          raise
        logging.warning("checkpoint at step %d in %s is unreadable (%s: %s); falling back to "
                        "step %d", s, self.manager.directory, type(e).__name__,
                        str(e).splitlines()[0] if str(e) else "", steps[i + 1])
        continue
      logging.info("restored checkpoint at step %d from %s", s, self.manager.directory)
      return restored["state"]
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
