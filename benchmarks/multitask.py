"""Issue 13's table: multi-task trunks (shared-bottom, MMoE, PLE) and loss weighting on the demo's
world (configs/multitask.py), several seeds, every task's valid and test metrics with the spread,
the retrieval stage, and a check of the issue's expectations and targets.

  python benchmarks/multitask.py --root=/tmp/vidrec_mt_bench [--seeds=0,1,2] \\
      [--variants=shared_bottom+basic,mmoe+basic,ple+basic,ple+fixed+basic,ple]
      [--out=benchmarks/results/multitask.md]

Seed s is world data.dataset.seed = 17 + s (17 is the demo's world) and initialisation/data
order s (`--seeds=3,4,5`: fresh worlds); the variants of one seed share the generated world and
its feature cache. Finished runs (WORKDIR/eval/metrics.json) are read, not rerun;
`--table_only` tabulates what finished.

Selection protocol (benchmarks/stats.py): every figure is mean ± sample SD (ddof 1) with n, the
valid figure beside the test one; a target's "best variant" is chosen by its valid mean, and an
expert trunk is ahead of shared-bottom only where a paired t-test over the seeds (shared worlds)
gives p < 0.05, otherwise level within noise.
"""

import json
import os

from absl import app
from absl import flags
from main_runner import REPO  # benchmarks/main_runner.py
from main_runner import run
from main_runner import write
import stats  # benchmarks/stats.py
import tables  # benchmarks/tables.py

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

# (column, metric key (its valid twin is read beside it), higher is better)
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


def table(results: dict, seeds: list[str], variants: list[str]) -> str:
  higher = {c: h for c, _, h in COLUMNS}
  key_of = {c: k for c, k, _ in COLUMNS}
  runs = {v: {s: results[(v, s)] for s in seeds if (v, s) in results} for v in variants}
  lines = [f"Mean ± SD (ddof 1) over seeds {', '.join(seeds)} (n = seeds finished; "
           f"{_STEPS.value} steps per run), the valid split beside the test split", ""]
  lines += tables.markdown(["variant"] + tables.split_header([c for c, _, _ in COLUMNS]),
                           [[v] + [x for _, k, _ in COLUMNS
                                   for x in tables.split_cells(list(runs[v].values()), k)]
                            for v in variants])
  rows = []
  for v in variants:
    # An expert trunk against shared-bottom with the same other words (ple+basic against
    # shared_bottom+basic), paired over the seeds (worlds) both finished.
    trunk, *rest = v.split("+")
    base = "+".join(["shared_bottom"] + rest)
    if trunk not in ("mmoe", "ple") or base not in runs:
      continue
    both = [s for s in seeds if s in runs[v] and s in runs[base]]
    if not both:
      continue
    for col in TASK_COLUMNS:
      res = tables.compare(runs[v], runs[base], key_of[col], (v, base), higher[col])
      rows.append([f"{v} ahead of {base} on {col}{'' if higher[col] else ' (lower)'} "
                   f"(seeds {', '.join(both)})", res["valid"][0], res["test"][0],
                   tables.holds(res["test"][1], "lifts")])
  for col, target in TARGETS:
    key = key_of[col]
    valid = {v: tables.metric(runs[v].values(), tables.at_split(key, "valid")) for v in variants}
    valid = {v: x for v, x in valid.items() if x}
    if not valid:
      continue
    best = stats.best_by_valid(valid, higher[col])
    vals = {s: tables.metric(runs[best].values(), tables.at_split(key, s)) for s in tables.SPLITS}
    res = {s: tables.judge(x, [target] * len(x), (best, str(target)), "paired", higher[col])
           for s, x in vals.items()}  # a one-sample t-test against the target
    rows.append([f"{col} above {target} (best variant by valid: {best})",
                 f"{tables.cell(vals['valid'])}: {res['valid'][0]}",
                 f"{tables.cell(vals['test'])}: {res['test'][0]}",
                 tables.holds(res["test"][1], "lifts")])
  lines += ["", "Checks: the verdict of a paired t-test on each split (p < 0.05 = ahead); "
            "holds by the test split", ""]
  lines += tables.markdown(["check", "valid", "test", "holds"], rows)
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
