"""Does a short, pruned sweep find a demo config at least as good as the hand-set one?

  python benchmarks/sweep_demo.py --root=/tmp/vidrec_sweep_bench --trials=20 --seeds=0,1,2

1. `python -m vidrec_jax.sweep --config=configs/demo.py --trials=N` in ROOT/sweep (the search
   space and the short trials are configs/demo.py's `sweep` section), timed.
2. The best trial's config (ROOT/sweep/best_config.py, full length) and the hand-set demo config,
   each trained for every seed on the same world and feature cache.
3. Prints valid and test cold-start AUC (mean ± std over seeds) of both, and the sweep's wall
   time and trial counts.

Finished steps are kept: run it again to resume (the sweep resumes its study, finished runs are
read back).
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_sweep_bench", "Sweep and run workdirs.")
_TRIALS = flags.DEFINE_integer("trials", 20, "Trials of the sweep.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the full-length comparison.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("valid/cold/auc", "test/cold/auc", "valid/all/auc", "test/all/auc")


def _run(cmd: list[str]) -> None:
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
  if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(f"failed: {' '.join(cmd)}")


def train(config: str, workdir: str, seed: int, shared: str) -> dict:
  metrics = os.path.join(workdir, "eval", "metrics.json")
  if not os.path.exists(metrics):
    _run([sys.executable, "-m", "vidrec_jax.main", f"--config={config}", f"--workdir={workdir}",
          f"--config.seed={seed}", f"--config.data.shuffle_seed={seed}",
          f"--config.data.data_dir={os.path.join(shared, 'data')}",
          f"--config.data.feature_cache={os.path.join(shared, 'features')}"])
  with open(metrics) as f:
    return json.load(f)


def main(_):
  root = _ROOT.value
  sweep_dir = os.path.join(root, "sweep")
  timing = os.path.join(root, "sweep_seconds.json")
  t = time.time()
  _run([sys.executable, "-m", "vidrec_jax.sweep", f"--config={REPO}/configs/demo.py:pretrained",
        f"--workdir={sweep_dir}", f"--trials={_TRIALS.value}", "--noprogress"])
  seconds = time.time() - t
  if os.path.exists(timing):  # a resumed sweep: add the earlier part
    with open(timing) as f:
      seconds += json.load(f)["seconds"]
  with open(timing, "w") as f:
    json.dump({"seconds": seconds}, f)
  with open(os.path.join(sweep_dir, "trials.json")) as f:
    trials = json.load(f)
  results = {"hand-set demo": [], "sweep's best": []}
  for seed in (int(s) for s in _SEEDS.value):
    results["hand-set demo"].append(train(f"{REPO}/configs/demo.py:pretrained",
                                          os.path.join(root, f"demo_{seed}"), seed, sweep_dir))
    results["sweep's best"].append(train(os.path.join(sweep_dir, "best_config.py"),
                                         os.path.join(root, f"best_{seed}"), seed, sweep_dir))
  c = trials["counts"]
  best = max((t for t in trials["trials"] if t["state"] == "COMPLETE"), key=lambda t: t["value"])
  print(f"sweep: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed in "
        f"{seconds:.0f} s; best trial {best['number']}: {best['params']} (trial valid "
        f"{best['value']:.4f})")
  print("| config | " + " | ".join(KEYS) + " |")
  print("|---" * (len(KEYS) + 1) + "|")
  for name, runs in results.items():
    cells = []
    for k in KEYS:
      vals = [m[k] for m in runs]
      cells.append(f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}"
                   if len(vals) > 1 else f"{vals[0]:.4f}")
    print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
