"""The video-encoder ablation (configs/encoder_ablation.py): cold-start oracle-normalised AUC gain
of five encoder variants on worlds of three taste kinds, several seeds, as a markdown table with
the valid and test figures, the spread, and a check of each expectation.

  python benchmarks/encoder_ablation.py --root=/tmp/vidrec_ablation [--seeds=0,1,2] \\
      [--steps=600] [--overrides=data.batch_size=32] [--out=benchmarks/results/encoder_ablation.md]

Each seed is another world (data.dataset.seed = 17 + seed; `--seeds=3,4,5`: fresh worlds) and
another model initialisation and data order; the encoder variants of one (taste, seed) share the
generated world. Finished runs (WORKDIR/eval/metrics.json) are read, not rerun, so an interrupted
ablation resumes; the table is rewritten after every run; `--table_only` tabulates what finished
without running anything.

Selection protocol (benchmarks/stats.py): mean ± sample SD (ddof 1) with n, valid beside test;
the best encoder of a taste is chosen by its valid mean, and a variant lifts (or hurts) against
rgb only where a paired t-test over the seeds (shared worlds) gives p < 0.05.
"""

import json
import os
import re

import numpy as np
from absl import app
from absl import flags
from main_runner import REPO  # benchmarks/main_runner.py
from main_runner import run
from main_runner import write
import stats  # benchmarks/stats.py
import tables  # benchmarks/tables.py

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_ablation", "Where worlds and workdirs go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (each one a world).")
_TASTES = flags.DEFINE_list("tastes", ["appearance", "motion", "order"], "Taste kinds.")
_ENCODERS = flags.DEFINE_list("encoders", ["rgb", "flow", "attention", "both", "pyramid"],
                              "Encoder variants.")
_STEPS = flags.DEFINE_integer("steps", 600, "Training steps of every run.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.x=y flags for every run.")
_METRIC = flags.DEFINE_string("metric", "test/cold/oracle_gain", "The metric of the table "
                              "(its valid and its test figure are both read).")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default ROOT/encoder_ablation.md).")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate the runs that finished.")

# (variant, baseline, taste kind, expected): the expectations.
EXPECTATIONS = (
    ("flow", "rgb", "motion", "lifts"),
    ("attention", "rgb", "order", "lifts"),
    ("flow", "rgb", "appearance", "does not hurt"),
    ("attention", "rgb", "appearance", "does not hurt"),
)
BASELINE = "rgb"  # the encoder the best of each taste is tested against


def table(results: dict, seeds: list[str]) -> str:
  tastes, encoders = _TASTES.value, _ENCODERS.value
  key = tables.at_split(_METRIC.value, "test")
  runs = {(t, e): {s: results[(t, e, s)][0] for s in seeds if (t, e, s) in results}
          for t in tastes for e in encoders}
  rows = []
  for e in encoders:
    cells = [x for t in tastes for x in tables.split_cells(list(runs[(t, e)].values()), key)]
    timed = tables.finite(results[(t, e, s)][1] for t in tastes for s in seeds
                          if (t, e, s) in results)  # runs finished earlier are read, not timed
    rows.append([e] + cells + [f"{sum(timed) / len(timed):.0f}" if timed else "(read)"])
  lines = [f"{key.partition('/')[2]}, mean ± SD (ddof 1) over seeds {', '.join(seeds)} "
           f"({_STEPS.value} steps per run), the valid split beside the test split", ""]
  lines += tables.markdown(["encoder"] + tables.split_header(tastes) + ["seconds/run"], rows)
  rows = []
  for variant, base, taste, expected in EXPECTATIONS:
    a, b = runs.get((taste, variant), {}), runs.get((taste, base), {})
    both = [s for s in seeds if s in a and s in b]
    if len(both) >= 2:  # the seeds that have both runs
      res = tables.compare(a, b, key, (variant, base))
      rows.append([f"{variant} {expected} {taste} tastes (vs {base}; seeds {', '.join(both)})",
                   res["valid"][0], res["test"][0], tables.holds(res["test"][1], expected)])
  lines += ["", "Expectations: the verdict of a paired t-test on each split (p < 0.05); holds "
            "by the test split", ""]
  lines += tables.markdown(["expectation", "valid", "test", "holds"], rows)
  rows = []
  for t in tastes:
    valid = {e: tables.metric(runs[(t, e)].values(), tables.at_split(key, "valid"))
             for e in encoders}
    valid = {e: x for e, x in valid.items() if x}
    if not valid:
      continue
    best = stats.best_by_valid(valid)
    if best == BASELINE:
      vs = "(the baseline)"
    elif (t, BASELINE) not in runs:
      vs = f"({BASELINE} not run)"
    else:
      vs = tables.compare(runs[(t, best)], runs[(t, BASELINE)], key, (best, BASELINE))["test"][0]
    rows.append([t, best] + tables.split_cells(list(runs[(t, best)].values()), key) + [vs])
  lines += ["", f"The best encoder of each taste, chosen by the valid mean; test against "
            f"{BASELINE} by a paired t-test", ""]
  lines += tables.markdown(["taste", "best by valid", "valid", "test", f"test vs {BASELINE}"],
                           rows)
  return "\n".join(lines) + "\n"


def read(path: str) -> dict:
  """The valid and test values of the table's metric in a run's metrics.json."""
  with open(path) as f:
    m = json.load(f)
  return {k: m.get(k) for k in (tables.at_split(_METRIC.value, s) for s in tables.SPLITS)}


def main(_):
  root = _ROOT.value
  os.makedirs(root, exist_ok=True)
  cfg = os.path.join(REPO, "configs", "encoder_ablation.py")
  extra = [f"--config.{o}" for o in _OVERRIDES.value]
  out = _OUT.value or os.path.join(root, "encoder_ablation.md")
  results = {}
  for seed in _SEEDS.value:
    for taste in _TASTES.value:
      data_dir = os.path.join(root, "data", f"{taste}_seed{seed}")
      if _TABLE_ONLY.value:
        for enc in _ENCODERS.value:
          path = os.path.join(root, f"{taste}_{enc}_seed{seed}", "eval", "metrics.json")
          if os.path.exists(path):
            results[(taste, enc, seed)] = (read(path), float("nan"))
        continue
      secs, _ = run([f"--config={cfg}:{taste},seed={seed}", f"--workdir={data_dir}",
                     "--mode=generate", f"--config.data.data_dir={data_dir}"])
      print(f"{taste} world of seed {seed} ready in {secs:.0f} s", flush=True)
      for enc in _ENCODERS.value:
        workdir = os.path.join(root, f"{taste}_{enc}_seed{seed}")
        metrics_path = os.path.join(workdir, "eval", "metrics.json")
        if os.path.exists(metrics_path):
          secs = float("nan")
        else:
          secs, log = run([f"--config={cfg}:{taste},{enc},seed={seed},steps={_STEPS.value}",
                           f"--workdir={workdir}", f"--config.data.data_dir={data_dir}"] + extra)
          ips = [float(x) for x in re.findall(r"impressions_per_second=([0-9.]+)", log)]
          print(f"  {np.mean(ips[1:]) if len(ips) > 1 else float('nan'):.0f} impressions/s",
                flush=True)
        results[(taste, enc, seed)] = (read(metrics_path), secs)
        print(f"{taste:10s} {enc:9s} seed {seed}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in results[(taste, enc, seed)][0].items() if v is not None)
              + f" ({secs:.0f} s)", flush=True)
        write(out, table(results, _SEEDS.value))
  text = table(results, _SEEDS.value)
  write(out, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
