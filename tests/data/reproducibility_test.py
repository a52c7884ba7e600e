"""Two fresh runs of one config give the same bytes and the same numbers: a world generated twice
(in separate processes, as two runs would) has identical video and record files, and two fresh
smoke runs - one with loader worker processes, one without - report identical metrics."""

import filecmp
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests import helpers
from tests.main_test import CONFIG
from tests.main_test import run_main

_GENERATE = """
import sys
from tests import helpers
from vidrec_jax.data import generate
from vidrec_jax.data.datasets import synthetic
generate.generate(sys.argv[1], synthetic.world_args(helpers.load_config().data.dataset),
                  show_progress=False)
"""


def _files(root: str) -> list[str]:
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


class ReproducibilityTest(absltest.TestCase):

  def test_two_generations_give_identical_files(self):
    dirs = [tempfile.mkdtemp() for _ in range(2)]
    for d in dirs:
      r = subprocess.run([sys.executable, "-c", _GENERATE, d], cwd=helpers.REPO,
                         capture_output=True, text=True, timeout=300, check=False)
      self.assertEqual(r.returncode, 0, r.stderr[-2000:])
    names = _files(dirs[0])
    self.assertEqual(names, _files(dirs[1]))
    self.assertTrue(any(n.endswith(".mp4") for n in names))
    records = [n for n in names if ".array_record-" in n]
    self.assertLen(records, 4)  # train, valid, test impressions and the catalog
    _, mismatch, errors = filecmp.cmpfiles(dirs[0], dirs[1], names, shallow=False)
    self.assertEqual((mismatch, errors), ([], []))

  def test_fresh_runs_and_worker_counts_give_identical_metrics(self):
    metrics = []
    for workers in (0, 2):
      workdir = tempfile.mkdtemp()
      r = run_main(f"--config={CONFIG}:smoke", f"--workdir={workdir}",
                   f"--config.data.num_workers={workers}")
      self.assertEqual(r.returncode, 0, r.stderr[-3000:])
      self.assertNotIn("leaked shared_memory", r.stderr)
      with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        metrics.append(json.load(f))
    self.assertEqual(metrics[0], metrics[1])


if __name__ == "__main__":
  absltest.main()
