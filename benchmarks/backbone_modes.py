"""Cold-start gain of the pretrained backbone trained frozen / top_blocks / full, several seeds,
written as a markdown results table (and the training throughput of each run).

  python benchmarks/backbone_modes.py --root=/tmp/vidrec_modes [--seeds=0,1,2] [--worlds=17] \\
      [--modes=frozen,top_blocks,full] [--overrides=train.steps=600,data.batch_size=32]

`frozen` trains from the feature cache (extracted once per world, shared by its runs; the cached
features equal the live backbone's, see tests/train/extract_test.py), `pixels` is the same frozen
model trained end to end from decoded pixels (for the throughput comparison), `top_blocks` and
`full` train from pixels. All runs of a world share it; `--worlds` lists the worlds
(data.dataset.seed; 17, the config's, lives in ROOT as before, another W in ROOT/worldW). Seeds
change the model initialisation, dropout and the data order (`seed`, `data.shuffle_seed`).
Finished runs are read, not rerun; `--table_only` tabulates them without running anything.

Selection protocol (benchmarks/stats.py): mean ± sample SD (ddof 1) with n, the valid figure
beside the test one; the best mode is chosen by its valid cold-start gain, and each mode is
compared with the first listed (frozen by default) by a paired t-test over the runs sharing a
world and seed: ahead only at p < 0.05, otherwise level within noise.
"""

import json
import os
import re

import numpy as np
from absl import app
from absl import flags
from main_runner import REPO  # benchmarks/main_runner.py
from main_runner import run
from main_runner import world_dir
from main_runner import write
import stats  # benchmarks/stats.py
import tables  # benchmarks/tables.py

WORLD = "17"  # configs/pretrained.py's data.dataset.seed (configs/demo.py's)

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_modes", "Where workdirs go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_WORLDS = flags.DEFINE_list("worlds", [WORLD], "Worlds (data.dataset.seed); the config's is "
                            f"{WORLD}.")
_MODES = flags.DEFINE_list("modes", ["frozen", "top_blocks", "full"],
                           "Backbone train modes (and `pixels`: frozen, from pixels); the first "
                           "is the baseline of the comparisons.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.x=y flags for every run.")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default ROOT/backbone_modes.md).")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate the runs that finished.")

VARIANT = {"frozen": "", "pixels": ":pixels", "top_blocks": ":top_blocks", "full": ":full"}
GAINS = (("cold gain", "cold/oracle_gain"), ("warm gain", "warm/oracle_gain"))


def table(rows: dict, modes: list[str]) -> str:
  """rows: mode -> {(world, seed): (metrics, seconds, train impressions/s)}."""
  body = []
  for mode in modes:
    runs = list(rows[mode].values())
    ips = tables.finite(r[2] for r in runs)  # runs read back were not timed
    wall = tables.finite(r[1] for r in runs)
    body.append([mode, str(len(runs))]
                + [x for _, k in GAINS for x in tables.split_cells([r[0] for r in runs], k)]
                + [f"{sum(ips) / len(ips):,.0f}" if ips else "(read)",
                   f"{sum(wall) / len(wall):.0f}" if wall else "(read)"])
  lines = tables.markdown(["mode", "runs"] + tables.split_header([n for n, _ in GAINS])
                          + ["train imp/s", "wall s/run"], body)
  metrics = {mode: {k: r[0] for k, r in rows[mode].items()} for mode in modes}
  valid = {mode: tables.metric(metrics[mode].values(), "valid/cold/oracle_gain")
           for mode in modes}
  valid = {mode: x for mode, x in valid.items() if x}
  if valid:
    lines += ["", f"Best mode by the valid cold-start gain: {stats.best_by_valid(valid)}"]
  base = modes[0]
  lines += tables.verdict_table(
      "Cold-start gain, paired t-test over the runs sharing a world and seed (p < 0.05 = ahead)",
      [(f"{mode} vs {base}", metrics[mode], metrics[base], "cold/oracle_gain", (mode, base))
       for mode in modes[1:]])
  return "\n".join(lines)


def main(_):
  root = _ROOT.value
  os.makedirs(root, exist_ok=True)
  cfg = os.path.join(REPO, "configs", "pretrained.py")
  extra = [f"--config.{o}" for o in _OVERRIDES.value]
  rows = {mode: {} for mode in _MODES.value}
  for world in _WORLDS.value:
    wroot = world_dir(root, world, WORLD)
    data_dir, cache = os.path.join(wroot, "data"), os.path.join(wroot, "features")
    shared = [f"--config.data.data_dir={data_dir}", f"--config.data.dataset.seed={world}"]
    if not _TABLE_ONLY.value:
      os.makedirs(wroot, exist_ok=True)
      run([f"--config={cfg}", f"--workdir={wroot}", "--mode=generate"] + shared)
      secs, _ = run([f"--config={cfg}", f"--workdir={wroot}", "--mode=extract"] + shared + extra)
      print(f"feature cache of world {world} ready in {secs:.0f} s", flush=True)
    for mode in _MODES.value:
      for seed in _SEEDS.value:
        workdir = os.path.join(wroot, f"{mode}_seed{seed}")
        if os.path.exists(os.path.join(workdir, "eval", "metrics.json")):
          secs, log = float("nan"), ""
        elif _TABLE_ONLY.value:
          continue
        else:
          secs, log = run([f"--config={cfg}{VARIANT[mode]}", f"--workdir={workdir}",
                           f"--config.seed={seed}", f"--config.data.shuffle_seed={seed}"]
                          + shared
                          + (["--config.data.feature_cache=" + cache] if mode == "frozen"
                             else [])
                          + extra)
        with open(os.path.join(workdir, "eval", "metrics.json")) as f:
          m = json.load(f)
        ips = [float(x) for x in re.findall(r"impressions_per_second=([0-9.]+)", log)]
        rows[mode][(world, seed)] = (m, secs,
                                     float(np.mean(ips[1:])) if len(ips) > 1 else float("nan"))
        print(f"{mode:10s} world {world} seed {seed}: cold gain valid "
              f"{m.get('valid/cold/oracle_gain', float('nan')):.3f} test "
              f"{m.get('test/cold/oracle_gain', float('nan')):.3f}, {secs:.0f} s", flush=True)
  header = (f"Cold-start and warm oracle-normalised AUC gain, mean ± SD (ddof 1) over worlds "
            f"{', '.join(_WORLDS.value)} x seeds {', '.join(_SEEDS.value)}, the valid split "
            f"beside the test split; configs/pretrained.py, overrides "
            f"{_OVERRIDES.value or 'none'}\n\n")
  text = header + table(rows, _MODES.value)
  out = _OUT.value or os.path.join(root, "backbone_modes.md")
  write(out, text + "\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
