"""Frozen configurations confirmed on synthetic worlds nobody tuned on (BENCHMARKS.md, "Selection
protocol": worlds 20-22; world seeds 17-19 and below were used for development).

  python benchmarks/fresh_worlds.py --root=/work/runs/mt \\
      --runs=mt=multitask.py,basic=multitask.py:basic,demo=demo.py:two_stream,pretrained=demo.py:pretrained \\
      --worlds=20,21,22 --compare=mt:basic,demo:pretrained,mt:demo

Runs `python -m vidrec_jax.main --config=configs/CONFIG,world_seed=W --workdir=ROOT/LABEL_wW`
for every run label and world (timed; a finished workdir is read back, not rerun), then prints
each label's cold-start and warm oracle gains and click AUC, valid beside test (mean ± sample SD
over worlds, n), its wall time, and paired verdicts of each `--compare` pair over the worlds
they share (p < 0.05 for "ahead"; otherwise "level within noise"). The table is written to
ROOT/fresh_worlds.md after every run.
"""

import json
import os
import time

from absl import app
from absl import flags

import tables
from main_runner import run
from main_runner import write

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_fresh_worlds", "Workdirs and the table.")
_RUNS = flags.DEFINE_list("runs", ["mt=multitask.py", "basic=multitask.py:basic"],
                          "label=configs/ file[:variants] for each configuration.")
_WORLDS = flags.DEFINE_list("worlds", ["20", "21", "22"], "World seeds (data.dataset.seed).")
_COMPARE = flags.DEFINE_list("compare", ["mt:basic"], "label_a:label_b pairs to test.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Read finished runs only, run nothing.")

METRICS = (("cold gain", "test/cold/oracle_gain"), ("warm gain", "test/warm/oracle_gain"),
           ("click AUC", "test/all/auc"))


def _parse_runs(items: list[str]) -> dict[str, str]:
  out = {}
  for item in items:
    label, sep, config = item.partition("=")
    if not sep or not label or not config:
      raise app.UsageError(f"--runs entry {item!r} is not label=config (e.g. mt=multitask.py)")
    out[label] = config
  return out


def _config_arg(config: str, world: str) -> str:
  name, _, variants = config.partition(":")
  return f"configs/{name}:{variants + ',' if variants else ''}world_seed={world}"


def main(argv):
  del argv
  runs = _parse_runs(_RUNS.value)
  pairs = [tuple(p.split(":")) for p in _COMPARE.value]
  for a, b in pairs:
    if a not in runs or b not in runs:
      raise app.UsageError(f"--compare {a}:{b} names a label not in --runs ({', '.join(runs)})")
  os.makedirs(_ROOT.value, exist_ok=True)
  results: dict[str, dict[str, dict]] = {label: {} for label in runs}
  walls: dict[str, list[float]] = {label: [] for label in runs}
  for world in _WORLDS.value:
    for label, config in runs.items():
      workdir = os.path.join(_ROOT.value, f"{label}_w{world}")
      metrics_path = os.path.join(workdir, "eval", "metrics.json")
      if not os.path.exists(metrics_path):
        if _TABLE_ONLY.value:
          continue
        wall, _ = run([f"--config={_config_arg(config, world)}", f"--workdir={workdir}"])
        walls[label].append(wall)
      with open(metrics_path) as f:
        results[label][world] = json.load(f)
      write(os.path.join(_ROOT.value, "fresh_worlds.md"), "\n".join(_table(runs, results,
                                                                          walls, pairs)) + "\n")
  text = "\n".join(_table(runs, results, walls, pairs))
  print(text)
  write(os.path.join(_ROOT.value, "fresh_worlds.md"), text + "\n")


def _table(runs, results, walls, pairs) -> list[str]:
  header = ["run", "config", "worlds"] + tables.split_header([m for m, _ in METRICS]) + [
      "wall s (this invocation)"]
  rows = []
  for label, config in runs.items():
    done = list(results[label].values())
    rows.append([label, config, ",".join(results[label])]
                + [c for _, key in METRICS for c in tables.split_cells(done, key)]
                + [tables.cell(walls[label], 0)])
  lines = [f"worlds {', '.join(_WORLDS.value)}; mean ± sample SD (n); {time.strftime('%F')}",
           ""] + tables.markdown(header, rows)
  for name, key in METRICS:
    lines += tables.verdict_table(
        f"Paired over shared worlds, {name}:",
        [(f"{a} vs {b}", results[a], results[b], key, (a, b)) for a, b in pairs])
  return lines


if __name__ == "__main__":
  app.run(main)
