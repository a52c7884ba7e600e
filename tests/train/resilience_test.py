"""Kills and signals, in real subprocesses: SIGTERM saves at the next step boundary and exits 0;
kill -9 at several points followed by a restart ends with bit-identical parameters and metrics
to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl.testing import absltest

from tests import helpers

CONFIG = os.path.join(helpers.REPO, "configs", "demo.py")


def _cmd(workdir: str, *extra) -> list[str]:
  return [sys.executable, "-m", "vidrec_jax.main", f"--config={CONFIG}:smoke",
          f"--workdir={workdir}", f"--config.data.data_dir={helpers.smoke_world_dir()}",
          "--config.train.log_every=1", *extra]


def _env():
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")


def _start(workdir: str, *extra) -> subprocess.Popen:
  return subprocess.Popen(_cmd(workdir, *extra), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          text=True, env=_env(), cwd=helpers.REPO)


def _wait_for(proc: subprocess.Popen, needle: str, timeout: float = 300) -> str:
  """Reads the child's stderr until a line contains `needle`; returns what was read."""
  seen, t0 = [], time.time()
  for line in proc.stderr:
    seen.append(line)
    if needle in line:
      return "".join(seen)
    if time.time() - t0 > timeout:
      break
  proc.kill()
  raise AssertionError(f"never saw {needle!r}:\n{''.join(seen)[-3000:]}")


def _params(workdir: str, step: int) -> dict:
  tree = ocp.PyTreeCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
  return tree["params"]


class ResilienceTest(absltest.TestCase):

  def test_sigterm_saves_at_the_next_step_and_exits_0(self):
    workdir = tempfile.mkdtemp()
    proc = _start(workdir, "--config.train.steps=100000", "--config.train.checkpoint_every=100000")
    _wait_for(proc, "step 3:")
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    self.assertEqual(proc.wait(timeout=120), 0, rest[-3000:])
    self.assertIn("preempted: saved step", rest)
    step = int(rest.split("preempted: saved step ")[1].split()[0])
    self.assertIn(str(step), os.listdir(os.path.join(workdir, "checkpoints")))
    self.assertFalse(os.path.exists(os.path.join(workdir, "eval")))
    # The same command resumes from there.
    r = subprocess.run(_cmd(workdir, f"--config.train.steps={step + 2}",
                            "--config.train.checkpoint_every=100000"),
                       capture_output=True, text=True, env=_env(), cwd=helpers.REPO,
                       timeout=300, check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn(f"restored checkpoint at step {step}", r.stderr)

  def test_sigterm_in_the_final_evaluation_exits_at_once_and_a_rerun_evaluates(self):
    # The final evaluation follows the last checkpoint; at a large catalog it takes longer than
    # a scheduler's grace period, so a signal abandons it rather than waiting for its end.
    workdir = tempfile.mkdtemp()
    proc = _start(workdir, "--config.train.steps=3")
    _wait_for(proc, "final evaluation at step 3")
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    self.assertEqual(proc.wait(timeout=120), 0, rest[-3000:])
    self.assertIn("preempted in the final evaluation: step 3 is saved", rest)
    self.assertFalse(os.path.exists(os.path.join(workdir, "eval", "metrics.json")))
    r = subprocess.run(_cmd(workdir, "--config.train.steps=3"), capture_output=True, text=True,
                       env=_env(), cwd=helpers.REPO, timeout=300, check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("restored checkpoint at step 3", r.stderr)
    self.assertNotIn("step 3:", r.stderr)  # nothing retrained
    self.assertTrue(os.path.exists(os.path.join(workdir, "eval", "metrics.json")))

  def test_kill_9_then_restart_is_bit_identical_to_an_uninterrupted_run(self):
    steps = ["--config.train.steps=10", "--config.train.checkpoint_every=2"]
    ref = tempfile.mkdtemp()
    r = subprocess.run(_cmd(ref, *steps), capture_output=True, text=True, env=_env(),
                       cwd=helpers.REPO, timeout=300, check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])

    killed = tempfile.mkdtemp()
    for kill_after in ("step 3:", "step 7:"):  # two kills at different points
      proc = _start(killed, *steps)
      _wait_for(proc, kill_after)
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=60)
    r = subprocess.run(_cmd(killed, *steps), capture_output=True, text=True, env=_env(),
                       cwd=helpers.REPO, timeout=300, check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("restored checkpoint at step", r.stderr)
    a, b = _params(ref, 10), _params(killed, 10)
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    self.assertEqual(tree_a, tree_b)
    for x, y in zip(leaves_a, leaves_b):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with open(os.path.join(ref, "eval", "metrics.json")) as f:
      ma = json.load(f)
    with open(os.path.join(killed, "eval", "metrics.json")) as f:
      mb = json.load(f)
    ma.pop("train/skipped_videos", None)
    mb.pop("train/skipped_videos", None)
    self.assertEqual(ma, mb)


if __name__ == "__main__":
  absltest.main()
