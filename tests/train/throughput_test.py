"""Throughput is timed between blocking points: a window that ends while a dispatched step is
still running on the device waits for it (a clock read at dispatch would count it as done), one
that starts while earlier work is in flight does not time that work, and a trainer's steps stay
asynchronous between its blocking points."""

import time

import jax
import jax.numpy as jnp
from absl.testing import absltest

from vidrec_jax.train import runner
from vidrec_jax.train import throughput


@jax.jit
def _slow(x):
  """About 0.1 s of matmuls on a CPU core: long enough to see that a clock waited for it."""
  return jax.lax.fori_loop(0, 20, lambda _, y: jnp.tanh(y @ x), x)


@jax.jit
def _step(state, batch):
  del batch
  state = _slow(state)
  return state, {"loss": state[0, 0]}


class ThroughputTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.x = jnp.full((768, 768), 0.01, jnp.float32)
    jax.block_until_ready((_slow(cls.x), _step(cls.x, None)))  # compiled before anything is timed
    runs = []
    for _ in range(3):
      t = time.perf_counter()
      jax.block_until_ready(_slow(cls.x))
      runs.append(time.perf_counter() - t)
    cls.compute = min(runs)  # the fastest the computation ran, waited for

  def test_stop_waits_for_the_step_in_flight(self):
    timer = throughput.Timer()
    timer.start(self.x)
    timer.add(100)
    y = _slow(self.x)
    self.assertFalse(y.is_ready())  # dispatched, not done: what a clock at dispatch would count
    timer.stop(y)
    self.assertTrue(y.is_ready())
    self.assertGreaterEqual(timer.seconds, 0.5 * self.compute)
    self.assertAlmostEqual(timer.per_second(), 100 / timer.seconds)
    self.assertFalse(timer.running)

  def test_start_does_not_time_work_already_in_flight(self):
    timer = throughput.Timer()
    y = _slow(self.x)
    timer.start(y)
    self.assertTrue(y.is_ready())
    timer.stop(y)
    self.assertLess(timer.seconds, 0.5 * self.compute)

  def test_the_seconds_of_intervals_add_up(self):
    timer = throughput.Timer()
    for _ in range(2):
      timer.start(self.x)
      timer.add(10)
      timer.stop(_slow(self.x))
    self.assertEqual(timer.examples, 20)
    self.assertGreaterEqual(timer.seconds, 2 * 0.5 * self.compute)
    with self.assertRaises(RuntimeError):
      timer.stop(self.x)

  def test_step_timer_times_the_steps_after_the_first_to_their_end(self):
    timer = throughput.StepTimer()
    step = timer.wrap(_step)
    state = self.x
    timer.add(1000)  # the first step's batch: compilation, not timed
    state, _ = step(state, None)
    self.assertIsNone(timer.lap())
    for _ in range(2):
      timer.add(10)
      state, metrics = step(state, None)
    # No wait on every step: the newest is still in flight until the blocking point (lap).
    self.assertFalse(metrics["loss"].is_ready())
    rate = timer.lap()
    self.assertTrue(metrics["loss"].is_ready())
    self.assertEqual(timer.examples, 20)
    self.assertGreaterEqual(timer.seconds, 2 * 0.5 * self.compute)
    self.assertAlmostEqual(rate, 20 / timer.seconds)
    # Time outside the steps (an evaluation after the last log step) is not timed.
    seconds = timer.seconds
    time.sleep(0.2)
    self.assertEqual(timer.lap(), rate)
    self.assertEqual(timer.seconds, seconds)
    # The next step restarts the clock, once its input state is ready.
    t = time.perf_counter()
    timer.add(10)
    state, _ = step(state, None)
    timer.lap()
    self.assertEqual(timer.examples, 30)
    self.assertBetween(timer.seconds - seconds, 0.5 * self.compute, time.perf_counter() - t)

  def test_the_runner_window_counts_its_last_step_to_its_end(self):
    log = runner._Log(0)  # pylint: disable=protected-access
    log.timer.start(self.x)
    log.timer.add(100)
    state, metrics = _step(self.x, None)
    log.window.append(metrics)
    out = log.scalars(1, (state, metrics))
    self.assertTrue(metrics["loss"].is_ready())
    self.assertLessEqual(out["impressions_per_second"], 100 / (0.5 * self.compute))
    self.assertFalse(log.timer.running)  # the next window starts at the next step
    self.assertEqual(log.start, 1)


if __name__ == "__main__":
  absltest.main()
