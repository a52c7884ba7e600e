"""Titles and the retrieval tasks on the synthetic world, several seeds: cold-start click AUC with
and without the title feature in the item tower, text->video retrieval of cold-start videos and
visual query, written as a markdown table.

  python benchmarks/text_tasks.py --root=/tmp/vidrec_text [--seeds=0,1,2] [--worlds=17] \\
      [--runs=no_title,title,title_tasks,id_only,id_title] [--table_only]

Runs (all configs/demo.py:pretrained otherwise: frozen EfficientNet-Lite0 from its feature cache,
2,000 steps):
  no_title     the demo as shipped
  title        + the title's MiniLM embedding (frozen, cached) in the item tower
  title_tasks  demo.py:text: title in the item tower + text_match and visual_query tasks
  id_only      configs/demo_id_only.py: no content tower
  id_title     ID-only + the title in the item tower (the title is the only content)
All runs of a world share its generated world, feature cache and text cache; `--worlds` lists the
worlds (data.dataset.seed; 17, the demo's, lives in ROOT as before, another W in ROOT/worldW).
Seeds change the model initialisation, dropout and the data order (`seed`,
`data.shuffle_seed`).

Selection protocol (benchmarks/stats.py): mean ± sample SD (ddof 1) with n, the valid figure
beside the test one (the retrieval tasks rank the whole catalog: one figure, no split); title
and title_tasks against no_title, id_title against id_only, by a paired t-test over the runs
sharing a world and seed: ahead only at p < 0.05, otherwise level within noise.
"""

import json
import os

from absl import app
from absl import flags
from main_runner import REPO  # benchmarks/main_runner.py
from main_runner import run
from main_runner import world_dir
from main_runner import write
import tables  # benchmarks/tables.py

WORLD = "17"  # configs/demo.py's data.dataset.seed

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_text", "Where workdirs go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_WORLDS = flags.DEFINE_list("worlds", [WORLD], "Worlds (data.dataset.seed); the demo's is "
                            f"{WORLD}.")
_RUNS = flags.DEFINE_list("runs", ["no_title", "title", "title_tasks", "id_only", "id_title"],
                          "Which runs.")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default ROOT/text_tasks.md).")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only tabulate the runs that finished.")

DEMO = os.path.join(REPO, "configs", "demo.py")
ID_ONLY = os.path.join(REPO, "configs", "demo_id_only.py")
RUNS = {
    "no_title": [f"--config={DEMO}:pretrained"],
    "title": [f"--config={DEMO}:pretrained", "--config.model.text.item_tower=True"],
    "title_tasks": [f"--config={DEMO}:pretrained,text"],
    "id_only": [f"--config={ID_ONLY}"],
    "id_title": [f"--config={ID_ONLY}", "--config.model.text.item_tower=True"],
}
# Ranking metrics: the valid figure beside the test one; retrieval tasks: catalog-wide.
SPLIT_COLUMNS = ("cold/auc", "cold/oracle_gain", "warm/auc")
CATALOG_COLUMNS = ("text_match/cold/recall@1", "text_match/cold/recall@10", "text_match/cold/mrr",
                   "visual_query/all/recall@1", "visual_query/all/recall@10",
                   "visual_query/all/mrr")
# (run, its baseline) compared on cold-start click AUC
COMPARISONS = (("title", "no_title"), ("title_tasks", "no_title"), ("id_title", "id_only"))


def table(rows: dict) -> str:
  """rows: run name -> {(world, seed): (metrics, seconds)}."""
  body = []
  for name, results in rows.items():
    runs = [m for m, _ in results.values()]
    secs = tables.finite(s for _, s in results.values())  # read runs are not timed
    body.append([name, str(len(results))]
                + [x for c in SPLIT_COLUMNS for x in tables.split_cells(runs, c, empty="-")]
                + [tables.cell(tables.metric(runs, c), empty="-") for c in CATALOG_COLUMNS]
                + [f"{sum(secs) / len(secs):.0f}" if secs else "(read)"])
  lines = tables.markdown(["run", "runs"] + tables.split_header(SPLIT_COLUMNS)
                          + list(CATALOG_COLUMNS) + ["seconds per run"], body)
  metrics = {name: {k: m for k, (m, _) in results.items()} for name, results in rows.items()}
  lines += tables.verdict_table(
      "Cold-start click AUC, paired t-test over the runs sharing a world and seed "
      "(p < 0.05 = ahead)",
      [(f"{name} vs {base}", metrics[name], metrics[base], "cold/auc", (name, base))
       for name, base in COMPARISONS if name in metrics and base in metrics])
  return "\n".join(lines)


def main(_):
  root = _ROOT.value
  os.makedirs(root, exist_ok=True)
  out = _OUT.value or os.path.join(root, "text_tasks.md")
  rows = {name: {} for name in _RUNS.value}
  for world in _WORLDS.value:
    wroot = world_dir(root, world, WORLD)
    shared = [f"--config.data.data_dir={os.path.join(wroot, 'data')}",
              f"--config.data.text_cache={os.path.join(wroot, 'text')}",
              f"--config.data.dataset.seed={world}"]
    features = [f"--config.data.feature_cache={os.path.join(wroot, 'features')}"]
    if not _TABLE_ONLY.value:
      os.makedirs(wroot, exist_ok=True)
      run([f"--config={DEMO}:pretrained", f"--workdir={wroot}", "--mode=generate"] + shared)
      secs, _ = run([f"--config={DEMO}:pretrained", f"--workdir={wroot}", "--mode=extract"]
                    + shared + features)
      print(f"feature cache of world {world} ready in {secs:.0f} s", flush=True)
    for seed in _SEEDS.value:
      for name in _RUNS.value:
        workdir = os.path.join(wroot, f"{name}_seed{seed}")
        metrics_path = os.path.join(workdir, "eval", "metrics.json")
        secs = float("nan")
        if not os.path.exists(metrics_path):
          if _TABLE_ONLY.value:
            continue
          extra = shared + ([] if name.startswith("id_") else features)
          secs, _ = run(RUNS[name] + [f"--workdir={workdir}", f"--config.seed={seed}",
                                   f"--config.data.shuffle_seed={seed}"] + extra)
        with open(metrics_path) as f:
          metrics = json.load(f)
        rows[name][(world, seed)] = (metrics, secs)
        print(f"{name} world {world} seed {seed}: cold/auc valid "
              f"{metrics.get('valid/cold/auc', float('nan')):.4f} test "
              f"{metrics.get('test/cold/auc', float('nan')):.4f} ({secs:.0f} s)", flush=True)
        write(out, table(rows) + "\n")
  write(out, table(rows) + "\n")
  print(table(rows))
  print(f"written to {out}")


if __name__ == "__main__":
  app.run(main)
