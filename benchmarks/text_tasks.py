"""Titles and the retrieval tasks on the synthetic world, several seeds: cold-start click AUC with
and without the title feature in the item tower, text->video retrieval of cold-start videos and
visual query, written as a markdown table.

  python benchmarks/text_tasks.py --root=/tmp/vidrec_text [--seeds=0,1,2] \\
      [--runs=no_title,title,title_tasks,id_only,id_title]

Runs (all configs/demo.py:pretrained otherwise: frozen EfficientNet-Lite0 from its feature cache,
2,000 steps):
  no_title     the demo as shipped
  title        + the title's MiniLM embedding (frozen, cached) in the item tower
  title_tasks  demo.py:text: title in the item tower + text_match and visual_query tasks
  id_only      configs/demo_id_only.py: no content tower
  id_title     ID-only + the title in the item tower (the title is the only content)
All runs share one generated world, one feature cache and one text cache. Seeds change the
model initialisation, dropout and the data order (`seed`, `data.shuffle_seed`).
"""

import json
import os

import numpy as np
from absl import app
from absl import flags
from main_runner import run  # benchmarks/main_runner.py

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_text", "Where workdirs go.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_RUNS = flags.DEFINE_list("runs", ["no_title", "title", "title_tasks", "id_only", "id_title"],
                          "Which runs.")
_OUT = flags.DEFINE_string("out", "", "Markdown table path (default ROOT/text_tasks.md).")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "demo.py")
ID_ONLY = os.path.join(REPO, "configs", "demo_id_only.py")
RUNS = {
    "no_title": [f"--config={DEMO}:pretrained"],
    "title": [f"--config={DEMO}:pretrained", "--config.model.text.item_tower=True"],
    "title_tasks": [f"--config={DEMO}:pretrained,text"],
    "id_only": [f"--config={ID_ONLY}"],
    "id_title": [f"--config={ID_ONLY}", "--config.model.text.item_tower=True"],
}
COLUMNS = ("test/cold/auc", "test/cold/oracle_gain", "test/warm/auc",
           "text_match/cold/recall@1", "text_match/cold/recall@10", "text_match/cold/mrr",
           "visual_query/all/recall@1", "visual_query/all/recall@10", "visual_query/all/mrr")


def table(rows: dict) -> str:
  lines = ["| run | seeds | " + " | ".join(COLUMNS) + " | seconds per run |",
           "|---" * (len(COLUMNS) + 3) + "|"]
  for name, results in rows.items():
    cells = []
    for c in COLUMNS:
      vals = [m[c] for m, _ in results if m.get(c) is not None]
      cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}" if vals else "-")
    secs = np.mean([s for _, s in results])
    lines.append(f"| {name} | {len(results)} | " + " | ".join(cells) + f" | {secs:.0f} |")
  return "\n".join(lines)


def main(_):
  root = _ROOT.value
  os.makedirs(root, exist_ok=True)
  shared = [f"--config.data.data_dir={os.path.join(root, 'data')}",
            f"--config.data.text_cache={os.path.join(root, 'text')}"]
  features = [f"--config.data.feature_cache={os.path.join(root, 'features')}"]
  run([f"--config={DEMO}:pretrained", f"--workdir={root}", "--mode=generate"] + shared)
  secs, _ = run([f"--config={DEMO}:pretrained", f"--workdir={root}", "--mode=extract"] + shared
                + features)
  print(f"feature cache ready in {secs:.0f} s", flush=True)
  out = _OUT.value or os.path.join(root, "text_tasks.md")
  rows = {name: [] for name in _RUNS.value}
  for seed in _SEEDS.value:
    for name in _RUNS.value:
      workdir = os.path.join(root, f"{name}_seed{seed}")
      metrics_path = os.path.join(workdir, "eval", "metrics.json")
      secs = float("nan")
      if not os.path.exists(metrics_path):
        extra = shared + ([] if name.startswith("id_") else features)
        secs, _ = run(RUNS[name] + [f"--workdir={workdir}", f"--config.seed={seed}",
                                 f"--config.data.shuffle_seed={seed}"] + extra)
      with open(metrics_path) as f:
        metrics = json.load(f)
      rows[name].append((metrics, secs))
      print(f"{name} seed {seed}: test/cold/auc={metrics['test/cold/auc']:.4f} "
            f"({secs:.0f} s)", flush=True)
      with open(out, "w") as f:
        f.write(table(rows) + "\n")
  print(table(rows))
  print(f"written to {out}")


if __name__ == "__main__":
  app.run(main)
