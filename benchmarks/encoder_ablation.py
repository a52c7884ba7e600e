"""The video-encoder ablation (configs/encoder_ablation.py): cold-start oracle-normalised AUC gain
of five encoder variants on worlds of three taste kinds, several seeds, as a markdown table with
the spread and a check of each expectation.

  python benchmarks/encoder_ablation.py --root=/tmp/vidrec_ablation [--seeds=0,1,2] \\
      [--steps=600] [--overrides=data.batch_size=32] [--out=benchmarks/results/encoder_ablation.md]

Each seed is another world (data.dataset.seed = 17 + seed) and another model initialisation and
data order; the encoder variants of one (taste, seed) share the generated world. Finished runs
(WORKDIR/eval/metrics.json) are read, not rerun, so an interrupted ablation resumes; the table
is rewritten after every run; `--table_only` tabulates what finished without running anything.
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

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_ablation", "Where worlds and workdirs go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (each one a world).")
_TASTES = flags.DEFINE_list("tastes", ["appearance", "motion", "order"], "Taste kinds.")
_ENCODERS = flags.DEFINE_list("encoders", ["rgb", "flow", "attention", "both", "pyramid"],
                              "Encoder variants.")
_STEPS = flags.DEFINE_integer("steps", 600, "Training steps of every run.")
_OVERRIDES = flags.DEFINE_list("overrides", [], "Extra --config.x=y flags for every run.")
_METRIC = flags.DEFINE_string("metric", "test/cold/oracle_gain", "The metric of the table.")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default ROOT/encoder_ablation.md).")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate the runs that finished.")

# (variant, baseline, taste kind, expected): the expectations.
EXPECTATIONS = (
    ("flow", "rgb", "motion", "lifts"),
    ("attention", "rgb", "order", "lifts"),
    ("flow", "rgb", "appearance", "does not hurt"),
    ("attention", "rgb", "appearance", "does not hurt"),
)


def spread_check(a: list[float], b: list[float], expected: str) -> tuple[bool, str]:
  """Whether variant values `a` relate to baseline values `b` as `expected`: 'lifts' = a's mean
  exceeds b's by more than the larger standard deviation; 'does not hurt' = a's mean is not
  below b's by more than it."""
  diff, spread = float(np.mean(a) - np.mean(b)), float(max(np.std(a), np.std(b)))
  ok = diff > spread if expected == "lifts" else diff >= -spread
  return ok, f"{diff:+.3f} (spread {spread:.3f})"


def table(results: dict, seeds: list[str]) -> str:
  tastes, encoders = _TASTES.value, _ENCODERS.value
  lines = [f"{_METRIC.value}, mean ± std over seeds {', '.join(seeds)} "
           f"({_STEPS.value} steps per run)", "",
           "| encoder | " + " | ".join(tastes) + " | seconds/run |",
           "|---|" + "---|" * (len(tastes) + 1)]
  for e in encoders:
    cells, secs = [], []
    for t in tastes:
      vals = [results[(t, e, s)][0] for s in seeds if (t, e, s) in results]
      secs += [results[(t, e, s)][1] for s in seeds if (t, e, s) in results]
      cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f} (n={len(vals)})" if vals else "")
    timed = [x for x in secs if np.isfinite(x)]  # runs finished earlier are read, not timed
    lines.append(f"| {e} | " + " | ".join(cells) + f" | {np.mean(timed):.0f} |" if timed else
                 f"| {e} | " + " | ".join(cells) + " | (read) |")
  lines += ["", "| expectation | difference of means | holds |", "|---|---|---|"]
  for variant, base, taste, expected in EXPECTATIONS:
    both = [s for s in seeds if (taste, variant, s) in results and (taste, base, s) in results]
    if len(both) >= 2:  # the seeds that have both runs
      ok, text = spread_check([results[(taste, variant, s)][0] for s in both],
                              [results[(taste, base, s)][0] for s in both], expected)
      lines.append(f"| {variant} {expected} {taste} tastes (vs {base}) | {text}, "
                   f"seeds {', '.join(both)} | {'yes' if ok else 'NO'} |")
  return "\n".join(lines) + "\n"


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
            with open(path) as f:
              results[(taste, enc, seed)] = (json.load(f)[_METRIC.value], float("nan"))
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
        with open(metrics_path) as f:
          value = json.load(f)[_METRIC.value]
        results[(taste, enc, seed)] = (value, secs)
        print(f"{taste:10s} {enc:9s} seed {seed}: {_METRIC.value} {value:.3f} ({secs:.0f} s)",
              flush=True)
        write(out, table(results, _SEEDS.value))
  text = table(results, _SEEDS.value)
  write(out, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
