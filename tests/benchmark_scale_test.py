"""benchmarks/scale.py: the process-tree memory sampler counts a child's memory (loader
workers are children), and growth exponents come out of the recorded phases."""

import os
import subprocess
import sys
import time

from absl.testing import absltest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import scale  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

# A parent that holds little and starts a child holding ~300 MB, as a loader worker would.
PARENT = r"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(3)"])
child.wait()
"""


class ScaleTest(absltest.TestCase):

  def test_tree_memory_counts_the_children(self):
    p = subprocess.Popen([sys.executable, "-c", PARENT])
    mem = scale.TreeMemory(p.pid, every=0.1)
    p.wait()
    time.sleep(0.2)
    rss, pss = mem.stop()
    self.assertGreater(rss, 300)  # the child's 300 MB, beyond the parent's own
    self.assertGreater(pss, 280)

  def test_exponents_between_consecutive_sizes(self):
    def phase(seconds, pss, disk, **cpu):
      return {"seconds": seconds, "peak_pss_mb": pss, "disk_mb": disk, **cpu}
    results = {"m": {"1000": {"train": phase(10.0, 500, 100.0)},
                     "4000": {"train": phase(40.0, 500, 1600.0, cpu_seconds=80.0)},
                     "2000": {"train": phase(20.0, 500, 400.0, cpu_seconds=20.0)}}}
    self.assertEqual(scale.exponents(results, "m"),
                     {"train": {"1000->2000": [1.0, None, 0.0, 2.0],
                                "2000->4000": [1.0, 2.0, 0.0, 2.0]}})
    self.assertEqual(scale.world_args(19738)[:2], ["--config.data.dataset.num_videos=19738",
                                                   "--config.data.dataset.num_users=100000"])


if __name__ == "__main__":
  absltest.main()
