"""Multi-process JAX set-up, and the preemption signal that every process acts on together.

`initialize` starts `jax.distributed` only when asked: explicitly (coordinator address, process
count and id, from flags or the VIDREC_COORDINATOR / VIDREC_NUM_PROCESSES / VIDREC_PROCESS_ID
environment that launch/local.sh sets), or by JAX's automatic cluster detection (SLURM, Cloud TPU,
Kubernetes via `--distributed=auto`). A short heartbeat timeout makes the survivors of a dead
process exit with an error instead of hanging.

`Preemption` turns SIGTERM into a request to save at the next step boundary; in a multi-process
run the flags are combined every step so all processes stop at the same step.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Callable, TypeVar

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

MODES = ("off", "auto", "explicit")
T = TypeVar("T")


def host0_then_barrier(name: str, fn: Callable[[], T]) -> T | None:
  """Runs `fn` on process 0 only (writing shared files: a dataset, a cache), then every process
  waits at the barrier `name` until it is done. Returns fn's result on process 0, else None."""
  out = fn() if jax.process_index() == 0 else None
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
  return out


def initialize(mode: str, coordinator_address: str = "", num_processes: int = 0,
               process_id: int = -1, heartbeat_timeout_seconds: int = 20) -> None:
  """Starts jax.distributed per `mode` ('off', 'auto' or 'explicit'); a no-op for 'off'."""
  coordinator_address = coordinator_address or os.environ.get("VIDREC_COORDINATOR", "")
  num_processes = num_processes or int(os.environ.get("VIDREC_NUM_PROCESSES", "0"))
  if process_id < 0:
    process_id = int(os.environ.get("VIDREC_PROCESS_ID", "-1"))
  if mode == "off" and coordinator_address:
    mode = "explicit"
  if mode == "off":
    return
  kw = dict(heartbeat_timeout_seconds=heartbeat_timeout_seconds, initialization_timeout=120)
  if mode == "explicit":
    if not coordinator_address or num_processes <= 0 or process_id < 0:
      raise ValueError("explicit multi-process start needs --coordinator_address, "
                       "--num_processes and --process_id (or VIDREC_COORDINATOR, "
                       "VIDREC_NUM_PROCESSES, VIDREC_PROCESS_ID)")
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **kw)
  elif mode == "auto":
    jax.distributed.initialize(**kw)
  else:
    raise ValueError(f"--distributed={mode!r}; allowed: {', '.join(MODES)}")
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


class Preempted(Exception):
  """A signal came while `Preemption.raising` was on: the work in progress is abandoned."""


class Preemption:
  """SIGTERM (and SIGINT when asked) -> `should_stop(step)` is True at the next step boundary,
  on every process at the same step; inside `raising`, the signal raises `Preempted` at once."""

  def __init__(self, signals=(signal.SIGTERM,)):
    self.requested = False
    self._raise = False
    self._previous = {}
    for s in signals:
      self._previous[s] = signal.signal(s, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self._raise:
      logging.warning("received signal %d: abandoning the work after the last checkpoint",
                      signum)
      self.requested = True
      raise Preempted(f"signal {signum}")
    if not self.requested:
      logging.warning("received signal %d: saving at the next step boundary, then exiting",
                      signum)
    self.requested = True

  @contextlib.contextmanager
  def raising(self):
    """Within, a signal (or one already received) raises `Preempted` rather than waiting for a
    step boundary: for work that follows the last checkpoint and that a resumed run redoes (the
    final evaluation, which takes minutes at a large catalog, longer than a scheduler's grace
    period). In a multi-process run every process is expected to get the signal, as on a
    preempted slice; one that does not waits in its next collective until it is killed."""
    if self.requested:
      raise Preempted("a signal before the final work")
    self._raise = True
    try:
      yield
    finally:
      self._raise = False

  def should_stop(self) -> bool:
    if jax.process_count() == 1:
      return self.requested
    flags = multihost_utils.process_allgather(np.int32(self.requested))
    return bool(np.asarray(flags).any())

  def close(self) -> None:
    for s, h in self._previous.items():
      signal.signal(s, h)
