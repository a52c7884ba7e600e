"""MicroLens' table in MicroLens' protocol: SASRec with video content against SASRec with item IDs
only, several seeds, on a release folder (the real one, or the synthetic world written in its
layout at a MicroLens-100K-proportioned size).

  python benchmarks/microlens.py --root=/tmp/ml_bench --videos=5000 --seeds=0,1,2
  python benchmarks/microlens.py --root=/tmp/ml_bench --release=/data/MicroLens-100k

Steps (each skipped when its output exists, so a rerun resumes):
  release  with no --release: `configs/multitask.py --mode=generate
           --config.data.dataset.layout=microlens` at --videos videos (users and clicks in
           MicroLens-100K's proportions, as benchmarks/scale.py; the cold quarter of the
           catalog published in the last 5% of the horizon, so that the test period has items
           new to training: main_runner.LATE_PUBLISH) into ROOT/release
  build    the release read into the runs' TFDS dataset and the frozen backbone's feature cache,
           once (`configs/microlens.py:frozen --mode=extract`, ROOT/build), shared by every run;
           with the `tower` variant also its flow-histogram and title-embedding caches
           (`configs/microlens.py:tower --mode=extract` on the same build)
  runs     `configs/microlens.py:VARIANT,seed=S` for each variant and seed (ROOT/VARIANT_S),
           trained with periodic validation; the checkpoint of best valid masked NDCG@10
           (the config's best_metric) is evaluated once on test

The table: each variant's valid and test metrics under the masked (MicroLens) protocol, also
for test targets that are new items (no training interaction: `test/masked/new/...`), as mean ±
sample SD over the seeds; then each content variant against `id` by Welch's test, and the
ratio of their new-item HR@10. Results go to ROOT/microlens.json and the table to --results.
"""

import json
import os
import shutil
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import main_runner  # pylint: disable=g-import-not-at-top,wrong-import-position
import microlens_oracle  # pylint: disable=g-import-not-at-top,wrong-import-position
import stats  # pylint: disable=g-import-not-at-top,wrong-import-position

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_microlens", "Release, build and workdirs.")
_RELEASE = flags.DEFINE_string("release", "", "A MicroLens release folder as downloaded; "
                               "'' generates the synthetic world in its layout.")
_BUILD = flags.DEFINE_string("build", "", "A workdir holding this release's dataset (data/) and "
                             "frozen feature cache (features/), e.g. benchmarks/scale.py's "
                             "frozen_N (its release: frozen_N_release/data/microlens); '' builds "
                             "them in ROOT/build.")
_VIDEOS = flags.DEFINE_integer("videos", 5000, "Videos of the generated world (no --release).")
_WORLD_SEED = flags.DEFINE_integer("world_seed", 17, "data.dataset.seed of the generated world.")
_EXPOSURE = flags.DEFINE_float("exposure_taste", 0.0, "data.dataset.exposure_taste of the "
                               "generated world: 0 logs uniform slates, > 0 a segment-level "
                               "feed's (benchmarks/microlens_oracle.py measures its ceiling).")
_VARIANTS = flags.DEFINE_list("variants", ["id", "frozen"], "configs/microlens.py variants; "
                              "the first is the baseline the others are tested against.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
_STEPS = flags.DEFINE_integer("steps", 0, "train.steps of every run (0: the config's).")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 0, "train.eval_every (0: the config's).")
_EXTRA = flags.DEFINE_list("overrides", [], "More --config.X=Y overrides for every run and "
                           "the build (without the leading --config.).")
_RESULTS = flags.DEFINE_string("results", os.path.join(main_runner.REPO, "benchmarks", "results",
                                                     "microlens.md"), "The results table.")

KEYS = ("valid/masked/hr@10", "valid/masked/ndcg@10", "test/masked/hr@10", "test/masked/ndcg@10",
        "test/masked/mrr@10", "test/masked/hr@20", "test/masked/new/hr@10",
        "test/masked/new/ndcg@10", "test/hr@10", "test/ndcg@10")


def release_folder() -> str:
  """The release folder the runs read: --release, else the generated world (made if missing)."""
  if _RELEASE.value:
    return _RELEASE.value
  work = os.path.join(_ROOT.value, "release")
  folder = os.path.join(work, "data", "microlens")
  if not os.path.isdir(folder):
    shutil.rmtree(work, ignore_errors=True)
    print(f"release: generating {_VIDEOS.value} videos ...", flush=True)
    main_runner.run(["--config=configs/multitask.py", f"--workdir={work}", "--mode=generate",
                     "--config.data.dataset.layout=microlens",
                     f"--config.data.dataset.seed={_WORLD_SEED.value}"]
                    + main_runner.microlens_world(_VIDEOS.value, late_publish=True,
                                                  exposure_taste=_EXPOSURE.value))
  return folder


def overrides() -> list[str]:
  """--overrides as main.py flags; the build takes them too, so that data settings (e.g.
  `data.frame_selection=middle,data.cache_frames=5`) reach the caches the runs read."""
  return [f"--config.{o}" for o in _EXTRA.value]


def build(folder: str, features: bool, tower: bool = False) -> str:
  """The runs' shared dataset and, when a variant reads it, the frozen feature cache (--build,
  else ROOT/build); with `tower`, the flow-histogram and title caches of that variant too."""
  work = _BUILD.value or os.path.join(_ROOT.value, "build")
  done = (os.path.join(work, "features", "meta.json") if features
          else os.path.join(work, "data", "dataset_stamp.json"))
  if not os.path.exists(done):
    print(f"build: dataset{' and frozen feature cache' if features else ''} ...", flush=True)
    secs, _ = main_runner.run(["--config=configs/microlens.py:frozen", f"--workdir={work}",
                               f"--config.data.dataset.path={folder}",
                               f"--mode={'extract' if features else 'generate'}"] + overrides())
    print(f"  {secs:.0f} s", flush=True)
  tower_done = all(os.path.exists(os.path.join(work, d, "meta.json"))
                   for d in ("flow", "text_features"))
  if tower and not tower_done:
    print("build: flow-histogram and title caches ...", flush=True)
    secs, _ = main_runner.run(["--config=configs/microlens.py:tower", f"--workdir={work}",
                               f"--config.data.dataset.path={folder}", "--mode=extract"]
                              + overrides())
    print(f"  {secs:.0f} s", flush=True)
  return work


def train(folder: str, shared: str, variant: str, seed: int) -> dict:
  """One run's final metrics (eval/metrics.json), trained unless they exist."""
  workdir = os.path.join(_ROOT.value, f"{variant}_{seed}")
  path = os.path.join(workdir, "eval", "metrics.json")
  if not os.path.exists(path):
    args = [f"--config=configs/microlens.py:{variant},seed={seed}", f"--workdir={workdir}",
            f"--config.data.dataset.path={folder}",
            f"--config.data.data_dir={os.path.join(shared, 'data')}",
            f"--config.data.feature_cache={os.path.join(shared, 'features')}"]
    if variant == "tower":
      args += [f"--config.data.flow_cache={os.path.join(shared, 'flow')}",
               f"--config.data.text_cache={os.path.join(shared, 'text_features')}"]
    if _STEPS.value:
      args.append(f"--config.train.steps={_STEPS.value}")
    if _EVAL_EVERY.value:
      args.append(f"--config.train.eval_every={_EVAL_EVERY.value}")
    args += overrides()
    print(f"{variant} seed {seed} ...", flush=True)
    secs, _ = main_runner.run(args + ["--mode=train"])  # resumes an interrupted run
    print(f"  {secs:.0f} s", flush=True)
  with open(path) as f:
    return json.load(f)


def table(results: dict) -> str:
  variants = list(results["runs"])
  base = variants[0]
  lines = ["# MicroLens' protocol: video-aware against ID-only SASRec (benchmarks/microlens.py)",
           "", f"Release: {results['release']}; {results['command']}", "",
           "Mean ± sample SD (ddof 1) over seeds, n each; the checkpoint of best valid masked "
           "NDCG@10.", "",
           "| variant | seeds | " + " | ".join(f"`{k}`" for k in KEYS) + " |",
           "|---" * (len(KEYS) + 2) + "|"]
  for v in variants:
    runs = list(results["runs"][v].values())
    cells = [stats.fmt([r[k] for r in runs if k in r], 4) if any(k in r for r in runs) else "–"
             for k in KEYS]
    lines.append(f"| {v} | {','.join(results['runs'][v])} | " + " | ".join(cells) + " |")
  lines += [""]
  for v in variants[1:]:
    a, b = list(results["runs"][v].values()), list(results["runs"][base].values())
    for k in ("valid/masked/hr@10", "test/masked/hr@10", "test/masked/ndcg@10",
              "test/masked/new/hr@10"):
      if all(k in r for r in a + b):
        lines.append(f"- `{k}`: " + stats.verdict([r[k] for r in a], [r[k] for r in b],
                                                     (v, base), test="welch"))
    k = "test/masked/new/hr@10"
    if all(k in r for r in a + b):
      ma, mb = (sum(r[k] for r in x) / len(x) for x in (a, b))
      ratio = (f"{ma / mb:.2f}×" if mb > 0 else "undefined (both 0)" if ma == 0
               else "unbounded (the baseline's is 0)")
      lines.append(f"- new-item HR@10 ratio {v} / {base}: {ratio} ({ma:.4f} / {mb:.4f})")
  counts = {k: v for k, v in next(iter(next(iter(results["runs"].values())).values())).items()
            if k.endswith("/count") and k.startswith("test/masked")}
  lines += ["", "Test queries: " + ", ".join(f"`{k}` {int(v)}" for k, v in sorted(counts.items()))]
  if results.get("ceiling"):
    c = results["ceiling"]
    lines += ["", "The world's ceiling under the same protocol (benchmarks/microlens_oracle.py: "
              "rankers that know the world's truth, the popularity ranking, a random one):", "",
              "| ranker | `valid/masked/hr@10` | `test/masked/hr@10` | `test/masked/ndcg@10` | "
              "`test/masked/new/hr@10` |", "|---|---|---|---|---|"]
    for name in ("oracle", "content", "popularity", "random"):
      cells = [c.get(k) for k in (f"valid/masked/{name}/hr@10", f"test/masked/{name}/hr@10",
                                  f"test/masked/{name}/ndcg@10", f"test/masked/new/{name}/hr@10")]
      lines.append(f"| {name} | " + " | ".join("–" if x is None else f"{x:.4f}" for x in cells)
                   + " |")
  return "\n".join(lines) + "\n"


def world_ceiling(folder: str) -> dict:
  """benchmarks/microlens_oracle.py's rankers on a release the synthetic world wrote ({} for a
  real release), computed once into ROOT/ceiling.json."""
  if not os.path.exists(os.path.join(folder, "world_config.json")):
    return {}
  path = os.path.join(_ROOT.value, "ceiling.json")
  if not os.path.exists(path):
    print("ceiling: the world's oracle rankers ...", flush=True)
    with open(path, "w") as f:
      json.dump(microlens_oracle.ceiling(folder), f, indent=1, sort_keys=True)
  with open(path) as f:
    return json.load(f)


def main(argv):
  del argv
  os.makedirs(_ROOT.value, exist_ok=True)
  folder = release_folder()
  shared = build(folder, features=any(v != "id" for v in _VARIANTS.value),
                 tower="tower" in _VARIANTS.value)
  results = {"release": _RELEASE.value or f"synthetic world {_WORLD_SEED.value}, "
             f"{_VIDEOS.value} videos", "command": " ".join(["python benchmarks/microlens.py"]
                                                           + sys.argv[1:]), "runs": {},
             "ceiling": world_ceiling(folder)}
  for v in _VARIANTS.value:
    for s in _SEEDS.value:
      results["runs"].setdefault(v, {})[s] = train(folder, shared, v, int(s))
      with open(os.path.join(_ROOT.value, "microlens.json"), "w") as f:
        json.dump(results, f, indent=1)
  main_runner.write(_RESULTS.value, table(results))
  print(table(results))


if __name__ == "__main__":
  app.run(main)
