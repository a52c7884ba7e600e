"""Does a short, pruned sweep find a demo config at least as good as the hand-set one?

  python benchmarks/sweep_demo.py --root=/tmp/vidrec_sweep_bench --trials=20 --seeds=0,1,2 \\
      [--worlds=17]

1. `python -m vidrec_jax.sweep --config=configs/demo.py --trials=N` in ROOT/sweep (the search
   space and the short trials are configs/demo.py's `sweep` section), timed.
2. The best trial's config (ROOT/sweep/best_config.py, full length; the sweep chose it by the
   trials' valid metric) and the hand-set demo config, each trained for every seed on every
   world of --worlds (data.dataset.seed; 17, the sweep's own, shares the sweep's data and feature
   cache as before; another W, a fresh world, gets its own in ROOT/worldW).
3. Prints valid and test cold-start and all-video AUC (mean ± sample SD (ddof 1) with n) of
   both, the paired t-test of the sweep's best against the hand-set config on each (runs of one
   world and seed paired; ahead only at p < 0.05, otherwise level within noise), and the sweep's
   wall time and trial counts.

Finished steps are kept: run it again to resume (the sweep resumes its study, finished runs are
read back).
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags
from main_runner import world_dir  # benchmarks/main_runner.py
import tables  # benchmarks/tables.py

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_sweep_bench", "Sweep and run workdirs.")
_TRIALS = flags.DEFINE_integer("trials", 20, "Trials of the sweep.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the full-length comparison.")
_WORLDS = flags.DEFINE_list("worlds", ["17"], "Worlds (data.dataset.seed) of the full-length "
                            "comparison; 17 is the sweep's.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("cold/auc", "all/auc")  # each read on valid and on test
SWEEP_WORLD = "17"  # configs/demo.py's data.dataset.seed, the world the sweep runs on


def _run(cmd: list[str]) -> None:
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
  if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(f"failed: {' '.join(cmd)}")


def train(config: str, workdir: str, seed: int, shared: str, world: str = SWEEP_WORLD) -> dict:
  metrics = os.path.join(workdir, "eval", "metrics.json")
  if not os.path.exists(metrics):  # a fresh world is generated, its cache extracted, on first use
    _run([sys.executable, "-m", "vidrec_jax.main", f"--config={config}", f"--workdir={workdir}",
          f"--config.seed={seed}", f"--config.data.shuffle_seed={seed}",
          f"--config.data.data_dir={os.path.join(shared, 'data')}",
          f"--config.data.feature_cache={os.path.join(shared, 'features')}",
          f"--config.data.dataset.seed={world}"])
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
  results = {"hand-set demo": {}, "sweep's best": {}}
  for world in _WORLDS.value:
    wroot = world_dir(root, world, SWEEP_WORLD)
    shared = sweep_dir if world == SWEEP_WORLD else wroot  # data and feature cache
    for seed in (int(s) for s in _SEEDS.value):
      results["hand-set demo"][(world, seed)] = train(
          f"{REPO}/configs/demo.py:pretrained", os.path.join(wroot, f"demo_{seed}"), seed, shared,
          world)
      results["sweep's best"][(world, seed)] = train(
          os.path.join(sweep_dir, "best_config.py"), os.path.join(wroot, f"best_{seed}"), seed,
          shared, world)
  c = trials["counts"]
  best = max((t for t in trials["trials"] if t["state"] == "COMPLETE"), key=lambda t: t["value"])
  print(f"sweep: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed in "
        f"{seconds:.0f} s; best trial {best['number']}: {best['params']} (trial valid "
        f"{best['value']:.4f})")
  print("\n".join(tables.markdown(
      ["config"] + tables.split_header(KEYS),
      [[name] + [x for k in KEYS for x in tables.split_cells(list(runs.values()), k, 4)]
       for name, runs in results.items()])))
  print("\n".join(tables.verdict_table(
      "The sweep's best against the hand-set config, paired t-test over the runs sharing a "
      "world and seed (p < 0.05 = ahead):",
      [(k, results["sweep's best"], results["hand-set demo"], k,
        ("sweep's best", "hand-set demo")) for k in KEYS])))


if __name__ == "__main__":
  app.run(main)
