"""Cold-start gain of the pretrained backbone trained frozen / top_blocks / full, several seeds,
written as a markdown results table (and the training throughput of each run).

  python benchmarks/backbone_modes.py --root=/tmp/vidrec_modes [--seeds=0,1,2] \\
      [--modes=frozen,top_blocks,full] [--overrides=train.steps=600,data.batch_size=32]

`frozen` trains from the feature cache (extracted once, shared by its runs; the cached features
equal the live backbone's, see tests/train/extract_test.py), `pixels` is the same frozen model
trained end to end from decoded pixels (for the throughput comparison), `top_blocks` and `full`
train from pixels. All runs share one generated world. Seeds change the model initialisation,
dropout and the data order (`seed`, `data.shuffle_seed`).
"""

import json
import os
import re

import numpy as np
from absl import app
from absl import flags
from main_runner import run  # benchmarks/main_runner.py

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_modes", "Where workdirs go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_MODES = flags.DEFINE_list("modes", ["frozen", "top_blocks", "full"],
                           "Backbone train modes (and `pixels`: frozen, from pixels).")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.x=y flags for every run.")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default ROOT/backbone_modes.md).")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANT = {"frozen": "", "pixels": ":pixels", "top_blocks": ":top_blocks", "full": ":full"}


def main(_):
  root = _ROOT.value
  os.makedirs(root, exist_ok=True)
  cfg = os.path.join(REPO, "configs", "pretrained.py")
  data_dir, cache = os.path.join(root, "data"), os.path.join(root, "features")
  extra = [f"--config.{o}" for o in _OVERRIDES.value]
  shared = [f"--config.data.data_dir={data_dir}"]
  run([f"--config={cfg}", f"--workdir={root}", "--mode=generate"])
  secs, _ = run([f"--config={cfg}", f"--workdir={root}", "--mode=extract"] + shared + extra)
  print(f"feature cache ready in {secs:.0f} s", flush=True)
  rows = {}
  for mode in _MODES.value:
    for seed in _SEEDS.value:
      workdir = os.path.join(root, f"{mode}_seed{seed}")
      if os.path.exists(os.path.join(workdir, "eval", "metrics.json")):
        secs, log = float("nan"), ""
      else:
        secs, log = run([f"--config={cfg}{VARIANT[mode]}", f"--workdir={workdir}",
                         f"--config.seed={seed}", f"--config.data.shuffle_seed={seed}"] + shared
                        + (["--config.data.feature_cache=" + cache] if mode == "frozen" else [])
                        + extra)
      with open(os.path.join(workdir, "eval", "metrics.json")) as f:
        m = json.load(f)
      ips = [float(x) for x in re.findall(r"impressions_per_second=([0-9.]+)", log)]
      rows[(mode, seed)] = (m, secs, float(np.mean(ips[1:])) if len(ips) > 1 else float("nan"))
      print(f"{mode:10s} seed {seed}: test cold gain {m['test/cold/oracle_gain']:.3f}, "
            f"{secs:.0f} s", flush=True)
  lines = ["| mode | " + " | ".join(f"seed {s}" for s in _SEEDS.value)
           + " | mean ± std | valid cold (mean) | test warm (mean) | train imp/s | wall s/run |",
           "|---" * (len(_SEEDS.value) + 6) + "|"]
  for mode in _MODES.value:
    cold = [rows[(mode, s)][0]["test/cold/oracle_gain"] for s in _SEEDS.value]
    vcold = [rows[(mode, s)][0]["valid/cold/oracle_gain"] for s in _SEEDS.value]
    warm = [rows[(mode, s)][0]["test/warm/oracle_gain"] for s in _SEEDS.value]
    ips = [rows[(mode, s)][2] for s in _SEEDS.value]
    wall = [rows[(mode, s)][1] for s in _SEEDS.value]
    lines.append(f"| {mode} | " + " | ".join(f"{c:.3f}" for c in cold)
                 + f" | {np.mean(cold):.3f} ± {np.std(cold):.3f} | {np.mean(vcold):.3f} | "
                 f"{np.mean(warm):.3f} | {np.nanmean(ips):,.0f} | {np.nanmean(wall):.0f} |")
  table = "\n".join(lines)
  header = (f"Test cold-start oracle-normalised AUC gain, configs/pretrained.py, overrides "
            f"{_OVERRIDES.value or 'none'}\n\n")
  out = _OUT.value or os.path.join(root, "backbone_modes.md")
  with open(out, "w") as f:
    f.write(header + table + "\n")
  print(header + table)


if __name__ == "__main__":
  app.run(main)
