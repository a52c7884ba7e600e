"""Multi-process training through launch/local.sh: 2 processes x 4 CPU devices follow the same
loss trajectory as 1 process x 8 devices and 1 process x 1 device, and evaluate the same; a
checkpoint of the 2-process run resumes in 1 process on another mesh on the same trajectory."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl.testing import absltest

from tests import helpers

CONFIG = os.path.join(helpers.REPO, "configs", "demo.py")
LOCAL = os.path.join(helpers.REPO, "launch", "local.sh")


def run(num_processes: int, devices: int, workdir: str, *extra):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
  args = [f"--config={CONFIG}:smoke", f"--workdir={workdir}",
          f"--config.data.data_dir={helpers.smoke_world_dir()}", "--config.train.log_every=1",
          "--config.train.checkpoint_every=100", *extra]
  return subprocess.run(["bash", LOCAL, str(num_processes), *args], capture_output=True,
                        text=True, env=env, cwd=helpers.REPO, timeout=600, check=False)


def losses(stderr: str) -> dict[int, float]:
  return {int(s): float(x) for s, x in re.findall(r"step (\d+): .*?\bloss=([0-9.eE+-]+)",
                                                   stderr)}


class MultiProcessTest(absltest.TestCase):

  def test_two_processes_match_one_process_and_one_device(self):
    results = {}
    for procs, devs in ((2, 4), (1, 8), (1, 1)):
      workdir = tempfile.mkdtemp()
      r = run(procs, devs, workdir)
      self.assertEqual(r.returncode, 0, f"{procs}x{devs}: {r.stderr[-3000:]}")
      with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics = json.load(f)
      results[(procs, devs)] = (losses(r.stderr), metrics)
    ref_losses, ref_metrics = results[(1, 8)]
    self.assertEqual(sorted(ref_losses), [1, 2, 3, 4, 5, 6])
    for key in ((2, 4), (1, 1)):
      got_losses, got_metrics = results[key]
      self.assertEqual(sorted(got_losses), sorted(ref_losses))
      np.testing.assert_allclose([got_losses[s] for s in sorted(ref_losses)],
                                 [ref_losses[s] for s in sorted(ref_losses)], rtol=2e-4,
                                 err_msg=str(key))
      for m in ("test/all/auc", "test/cold/oracle_gain", "valid/all/logloss"):
        self.assertAlmostEqual(got_metrics[m], ref_metrics[m], delta=2e-3, msg=f"{key} {m}")

    # Another process count and mesh on restore: 2 processes x 4 devices train to step 3 and
    # save; 1 process on a (data=1, fsdp=2) mesh resumes and follows the same trajectory.
    workdir = tempfile.mkdtemp()
    r = run(2, 4, workdir, "--config.train.steps=3")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    r = run(1, 2, workdir, "--config.mesh.shape.data=1", "--config.mesh.shape.fsdp=2")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("restored checkpoint at step 3", r.stderr)
    resumed = losses(r.stderr)
    self.assertEqual(sorted(resumed), [4, 5, 6])
    np.testing.assert_allclose([resumed[s] for s in (4, 5, 6)],
                               [ref_losses[s] for s in (4, 5, 6)], rtol=2e-4)

  def test_a_dead_peer_makes_the_survivor_exit_with_an_error_within_60_s(self):
    workdir = tempfile.mkdtemp()
    with socket.socket() as sock:
      sock.bind(("localhost", 0))
      port = sock.getsockname()[1]
    procs = []
    for i in range(2):
      env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
                 VIDREC_COORDINATOR=f"localhost:{port}", VIDREC_NUM_PROCESSES="2",
                 VIDREC_PROCESS_ID=str(i))
      procs.append(subprocess.Popen(
          [sys.executable, "-m", "vidrec_jax.main", f"--config={CONFIG}:smoke",
           f"--workdir={workdir}", f"--config.data.data_dir={helpers.smoke_world_dir()}",
           "--config.train.steps=1000000", "--config.train.log_every=1"],
          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
          cwd=helpers.REPO))
    seen = []
    for line in procs[0].stderr:  # wait until training runs
      seen.append(line)
      if "step 2:" in line:
        break
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    t0 = time.time()
    try:
      rest = procs[0].communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
      procs[0].kill()
      self.fail("the surviving process still runs 60 s after its peer died")
    self.assertNotEqual(procs[0].returncode, 0)
    self.assertLess(time.time() - t0, 60)
    self.assertIn("heartbeat", rest)

  def test_a_bad_process_count_flag_is_one_line(self):
    r = subprocess.run(["bash", LOCAL, "0", f"--config={CONFIG}:smoke", "--workdir=/tmp/x"],
                       capture_output=True, text=True, check=False)
    self.assertEqual(r.returncode, 2)
    self.assertIn("NUM_PROCESSES must be >= 1", r.stderr)


if __name__ == "__main__":
  absltest.main()
