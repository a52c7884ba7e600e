"""Issue 13's table: multi-task trunks (shared-bottom, MMoE, PLE) and loss weighting on the demo's
world (configs/multitask.py), several seeds, every task's test metrics with the spread, the
retrieval stage, and a check of the issue's expectations and targets.

  python benchmarks/multitask.py --root=/tmp/vidrec_mt_bench [--seeds=0,1,2] \\
      [--variants=shared_bottom+basic,mmoe+basic,ple+basic,ple+fixed+basic,ple]
      [--out=benchmarks/results/multitask.md]

Seed s is world data.dataset.seed = 17 + s (17 is the demo's world) and initialisation/data
order s; the variants of one seed share the generated world and its feature cache. Finished
runs (WORKDIR/eval/metrics.json) are read, not rerun; `--table_only` tabulates what finished.
"""

import json
import os

import numpy as np
from absl import app
from absl import flags
from main_runner import REPO  # benchmarks/main_runner.py
from main_runner import run
from main_runner import write

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_mt_bench", "Where worlds and workdirs go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (each one a world).")
_VARIANTS = flags.DEFINE_list(
    "variants", ["shared_bottom+basic", "mmoe+basic", "ple+basic", "ple+fixed+basic", "ple"],
    "configs/multitask.py variants, '+' joining words of one run (`basic`: without the default "
    "options given, affinity, duration and white, as the trunks were compared).")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps of every run (the tables of "
                              "2026-12-01 and of the first two 12-03 sessions used 2000).")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default ROOT/multitask.md).")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate the runs that finished.")

# (column, metric key, higher is better)
COLUMNS = (
    ("click cold gain", "test/cold/oracle_gain", True),
    ("click warm gain", "test/warm/oracle_gain", True),
    ("click AUC", "test/all/auc", True),
    ("watch time MAE", "test/watch_time/mae", False),
    ("like AUC", "test/all/like_auc", True),
    ("recall@50", "test/retrieval/recall@50", True),
    ("2-stage NDCG@10", "test/two_stage/ndcg@10", True),
    ("full-rank NDCG@10", "test/full_rank/ndcg@10", True),
)
TASK_COLUMNS = ("click AUC", "watch time MAE", "like AUC")  # one per task of the trunk
TARGETS = (("click cold gain", 0.8), ("click warm gain", 0.9))


def fmt(vals: list[float]) -> str:
  return f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else ""


def table(results: dict, seeds: list[str], variants: list[str]) -> str:
  lines = [f"Test split, mean ± std over seeds {', '.join(seeds)} ({_STEPS.value} steps per run; "
           "n = seeds finished)", "",
           "| variant | n | " + " | ".join(c for c, _, _ in COLUMNS) + " |",
           "|---|---|" + "---|" * len(COLUMNS)]
  for v in variants:
    runs = [results[(v, s)] for s in seeds if (v, s) in results]
    cells = [fmt([r[k] for r in runs if k in r]) for _, k, _ in COLUMNS]
    lines.append(f"| {v} | {len(runs)} | " + " | ".join(cells) + " |")
  lines += ["", "| check | result | holds |", "|---|---|---|"]
  for v in variants:
    # An expert trunk against shared-bottom with the same other words (ple+basic against
    # shared_bottom+basic).
    trunk, *rest = v.split("+")
    base = "+".join(["shared_bottom"] + rest)
    if trunk not in ("mmoe", "ple"):
      continue
    both = [s for s in seeds if (v, s) in results and (base, s) in results]
    if not both:
      continue
    for col, key, higher in COLUMNS:
      if col not in TASK_COLUMNS:
        continue
      a = np.mean([results[(v, s)][key] for s in both])
      b = np.mean([results[(base, s)][key] for s in both])
      ok = a >= b if higher else a <= b
      lines.append(f"| {v} >= {base} on {col} | {a:.4f} vs {b:.4f} (seeds {', '.join(both)}) "
                   f"| {'yes' if ok else 'NO'} |")
  for col, target in TARGETS:
    key = dict((c, k) for c, k, _ in COLUMNS)[col]
    best = max(((np.mean([results[(v, s)][key] for s in seeds if (v, s) in results]), v)
                for v in variants if any((v, s) in results for s in seeds)), default=None)
    if best is not None:
      lines.append(f"| {col} >= {target} (best variant: {best[1]}) | {best[0]:.3f} | "
                   f"{'yes' if best[0] >= target else 'NO'} |")
  return "\n".join(lines) + "\n"


def main(_):
  root = _ROOT.value
  os.makedirs(root, exist_ok=True)
  cfg = os.path.join(REPO, "configs", "multitask.py")
  out = _OUT.value or os.path.join(root, "multitask.md")
  variants, seeds = _VARIANTS.value, _SEEDS.value
  results = {}
  for seed in seeds:
    world = f"world_seed={17 + int(seed)},seed={seed}"
    data_dir = os.path.join(root, f"data_seed{seed}")
    shared = [f"--config.data.data_dir={data_dir}",
              f"--config.data.feature_cache={os.path.join(root, f'features_seed{seed}')}",
              # written by the first run that reads it (`white`, a default, or `flow`)
              f"--config.data.flow_cache={os.path.join(root, f'flow_seed{seed}')}"]
    if not _TABLE_ONLY.value and not os.path.isdir(data_dir):
      secs, _ = run([f"--config={cfg}:{world}", f"--workdir={data_dir}", "--mode=generate",
                     f"--config.data.data_dir={data_dir}"])
      print(f"world of seed {seed} ready in {secs:.0f} s", flush=True)
    if not _TABLE_ONLY.value and not os.path.exists(os.path.join(shared[1].split("=", 1)[1],
                                                                 "meta.json")):
      secs, _ = run([f"--config={cfg}:{world}", f"--workdir={data_dir}", "--mode=extract"]
                    + shared)
      print(f"feature cache of seed {seed} ready in {secs:.0f} s", flush=True)
    for v in variants:
      workdir = os.path.join(root, f"{v.replace('+', '_')}_seed{seed}")
      path = os.path.join(workdir, "eval", "metrics.json")
      if not os.path.exists(path):
        if _TABLE_ONLY.value:
          continue
        secs, _ = run([f"--config={cfg}:{v.replace('+', ',')},{world},steps={_STEPS.value}",
                       f"--workdir={workdir}"] + shared)
        print(f"{v} seed {seed}: {secs:.0f} s", flush=True)
      with open(path) as f:
        results[(v, seed)] = json.load(f)
      write(out, table(results, seeds, variants))
  text = table(results, seeds, variants)
  write(out, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
