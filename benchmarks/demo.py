"""Times configs/demo.py (the default, its two_stream, pretrained and conv variants, and the
ID-only baseline too) end to end from an empty workdir.

  python benchmarks/demo.py [--root=/tmp/vidrec_bench] \
      [--configs=demo.py,demo.py:two_stream,demo.py:pretrained,demo.py:conv,demo_id_only.py]

Each config runs `python -m vidrec_jax.main` in a fresh workdir (data generation included) and the
script prints wall time, training examples/s from the log, and cold/warm test metrics.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_bench", "Where workdirs go (wiped).")
_CONFIGS = flags.DEFINE_list("configs", ["demo.py", "demo.py:two_stream",
                                         "demo.py:pretrained", "demo.py:conv",
                                         "demo_id_only.py"],
                             "Config files, with optional :variant.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.x=y flags for every run.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(_):
  rows = []
  for name in _CONFIGS.value:
    workdir = os.path.join(_ROOT.value, name.replace(".py", "").replace(":", "_"))
    shutil.rmtree(workdir, ignore_errors=True)
    cmd = [sys.executable, "-m", "vidrec_jax.main", f"--config={REPO}/configs/{name}",
           f"--workdir={workdir}"] + [f"--config.{o}" for o in _OVERRIDES.value]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.time() - t
    if r.returncode:
      print(r.stderr[-3000:])
      raise SystemExit(f"{name} failed with exit status {r.returncode}")
    eps = [float(x) for x in re.findall(r"impressions_per_second=([0-9.]+)", r.stderr)]
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
      m = json.load(f)
    rows.append((name, wall, sum(eps[1:]) / max(len(eps) - 1, 1) if eps else float("nan"), m))
  print(f"{'config':20s} {'wall s':>8s} {'train ex/s':>11s} {'cold AUC':>9s} {'cold gain':>10s} "
        f"{'warm AUC':>9s} {'warm gain':>10s} {'oracle cold AUC':>16s} {'WT MAE':>7s}")
  for name, wall, eps, m in rows:
    print(f"{name:20s} {wall:8.0f} {eps:11.0f} {m['test/cold/auc']:9.4f} "
          f"{m['test/cold/oracle_gain']:10.3f} {m['test/warm/auc']:9.4f} "
          f"{m['test/warm/oracle_gain']:10.3f} {m['test/cold/oracle_auc']:16.4f} "
          f"{m['test/watch_time/mae']:7.3f}")


if __name__ == "__main__":
  app.run(main)
