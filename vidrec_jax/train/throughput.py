"""Examples per second timed between blocking points.

JAX returns from a jitted step as soon as it is dispatched, long before the device has run it, so
a clock read at dispatch counts the steps still in flight as done (and charges their time to
whatever is timed next). A `Timer` reads the clock only after `jax.block_until_ready`: on what
the first timed step reads when it starts, on the outputs of the last timed step when it stops.

Start and stop at the edges of a timed window only (a log step, say), never on every step: in
between, the host keeps dispatching ahead of the device, as training does when nobody times it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax


class Timer:
  """Examples and seconds summed over the intervals between `start` and `stop`."""

  def __init__(self):
    self.examples, self.seconds = 0.0, 0.0
    self.started: float | None = None  # perf_counter() at the last start; None when stopped

  @property
  def running(self) -> bool:
    return self.started is not None

  def start(self, ready: Any = None) -> None:
    """Starts the clock once `ready` (a pytree of arrays: what the first timed step reads) has
    been computed, so that no earlier work still in flight is timed."""
    jax.block_until_ready(ready)
    self.started = time.perf_counter()

  def add(self, examples: float) -> None:
    self.examples += examples

  def stop(self, outputs: Any) -> None:
    """Stops the clock once `outputs` (a pytree of arrays, of the last timed step) have been
    computed, so that every step dispatched since `start` is timed to its end."""
    if self.started is None:
      raise RuntimeError("Timer.stop without Timer.start")
    jax.block_until_ready(outputs)
    self.seconds += time.perf_counter() - self.started
    self.started = None

  def per_second(self) -> float:
    return self.examples / max(self.seconds, 1e-9)


class StepTimer(Timer):
  """A `Timer` of a run's steps after its first (which compiles), for a trainer: `wrap` its
  jitted `(state, batch) -> (state, metrics)`, `add` each batch's examples before its step, and
  call `lap` at blocking points (a log step, which waits for the newest step anyway). The clock
  starts when a timed step's input state is ready (the second step's, or the first's after a
  `lap`): the run gains one wait, for its first step, and the other steps stay asynchronous."""

  def __init__(self):
    super().__init__()
    self.steps, self.metrics = 0, None  # the steps run, the newest one's metrics

  def wrap(self, step: Callable[[Any, Any], tuple[Any, Any]]) -> Callable:
    def timed(state, batch):
      if self.steps and not self.running:
        self.start(state)
      state, self.metrics = step(state, batch)
      self.steps += 1
      return state, self.metrics
    return timed

  def add(self, examples: float) -> None:
    if self.steps:  # the first step's examples are not timed
      super().add(examples)

  def lap(self) -> float | None:
    """Examples per second of the steps run so far after the first (None before one is
    timed); the clock stops once the newest step is done and restarts with the next step."""
    if self.running:
      self.stop(self.metrics)
    return self.per_second() if self.seconds else None
