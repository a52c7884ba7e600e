"""RecBole's SASRec and this project's, side by side on MovieLens-100K with the same split and the
same hyper-parameters (hidden 64, 2 layers, 2 heads, inner 256, max length 50, dropout 0.2,
cross-entropy over the catalog, Adam lr 1e-3, batches of ~2,048 samples, early stopping after
10 epochs without a better valid NDCG@10, test on the best checkpoint).

  python benchmarks/recbole_sasrec.py --root=/tmp/sasrec --seeds=0,1,2

RecBole 1.2.1 runs in a virtual environment of its own (`--venv`, built on first use: torch
2.13.0, the CPU build on this machine's disk; numpy<2 and pandas<2.2, which recbole 1.2.1 needs).
Three things make it run fairly here: `ray` is imported by recbole only for tuning, so a stub
module stands in; importing recbole's models switches on torch's autograd anomaly detection
(sine.py), which makes training ~3x slower, so it is switched off again; and recbole reloads its
best checkpoint with `torch.load`, whose `weights_only` default is now True, so it is called
with weights_only=False. Both sides read the same ML-100K files (the copy in the recbole wheel)
and split them leave-one-out by time; both rank the test item against the whole catalog
without removing history items.

`--part=speed` times a few epochs of each (run it on a quiet machine), `--part=accuracy` trains
each to early stopping for every seed; the default runs both. A RecBole accuracy run takes 1-3
hours a seed on 2 cores, so it keeps a resume state under --root: kill it at any time and run
the same command again to go on exactly where it was (finished seeds are read back). Prints one
table (best valid NDCG@10 beside the test metrics, mean ± sample SD with n, a Welch verdict on
test NDCG@10 since seeds do not pair across libraries, and throughput both per trained target
and per transformer position); --out writes it as markdown. `--part=split` dumps RecBole's
split for tests/data/recbole_split_test.py.
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

import stats  # benchmarks/stats.py

_ROOT = flags.DEFINE_string(
    "root", "/tmp/vidrec_sasrec",
    "Workdirs and logs; RecBole runs go on from the resume state they find here.")
_VENV = flags.DEFINE_string("venv", "/tmp/vidrec_recbole_venv", "RecBole's virtualenv.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the accuracy runs.")
_PART = flags.DEFINE_enum("part", "both", ["speed", "accuracy", "both", "split"],
                          "What to run (split: dump RecBole's valid/test items per user).")
_SIDES = flags.DEFINE_list("sides", ["recbole", "vidrec"], "Which implementations to run.")
_SPEED_EPOCHS = flags.DEFINE_integer("speed_epochs", 3, "Epochs timed by --part=speed.")
_MAX_EPOCHS = flags.DEFINE_integer("max_epochs", 200, "Epoch cap of the accuracy runs.")
_OUT = flags.DEFINE_string("out", "", "Also write the table as markdown here.")
_THREADS = flags.DEFINE_integer("recbole_threads", 2, "torch.set_num_threads of RecBole's runs.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_PER_EPOCH = 47  # configs/movielens.py: 3,564 windows // 75 per batch
# Transformer positions run per trained target: RecBole pads one sequence of 50 per target;
# vidrec_jax trains 3,564 windows of 50 positions an epoch for 97,171 targets (stride 25), each
# target trained once. Throughput per position is samples/s times this.
POSITIONS = {"recbole": 50.0, "vidrec": 3564 * 50 / 97171}

# Runs inside RecBole's virtualenv: argv = seed, epochs, early-stopping patience, out dir,
# torch threads. Resumable: after every evaluated epoch it writes OUT/resume.pth (model,
# optimizer, early-stopping state, the shuffling generator's and the global RNG states, the
# epoch times) and appends a line to OUT/progress.txt; started again on the same OUT it goes on
# from there with the same batches and dropout masks, so a run of hours can be spread over
# several sittings. The best model lives at OUT/best.pth; the final result at OUT/result.json.
RECBOLE_DRIVER = r'''
import json, os, random, resource, sys, time, types, importlib.util
seed, epochs, patience, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
threads = int(sys.argv[5])
ray = types.ModuleType("ray"); ray.tune = types.ModuleType("ray.tune")
sys.modules["ray"], sys.modules["ray.tune"] = ray, ray.tune
import numpy as np
import torch
torch.set_num_threads(threads)
_load = torch.load
torch.load = lambda *a, **k: _load(*a, **dict(k, weights_only=False))
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed
torch.autograd.set_detect_anomaly(False)  # recbole's sine.py turns it on at import
root = os.path.join(importlib.util.find_spec("recbole").submodule_search_locations[0],
                    "dataset_example")
config = Config(model="SASRec", dataset="ml-100k", config_dict=dict(
    data_path=root, checkpoint_dir=out, USER_ID_FIELD="user_id", ITEM_ID_FIELD="item_id",
    TIME_FIELD="timestamp", load_col={"inter": ["user_id", "item_id", "timestamp"]},
    MAX_ITEM_LIST_LENGTH=50, hidden_size=64, n_layers=2, n_heads=2, inner_size=256,
    hidden_dropout_prob=0.2, attn_dropout_prob=0.2, hidden_act="gelu", layer_norm_eps=1e-12,
    initializer_range=0.02, loss_type="CE", train_neg_sample_args=None, epochs=epochs,
    train_batch_size=2048, eval_batch_size=4096, learner="adam", learning_rate=1e-3,
    weight_decay=0.0, stopping_step=patience, eval_step=1,
    eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
               "group_by": "user"},
    metrics=["Hit", "NDCG", "MRR"], topk=[10, 20], valid_metric="NDCG@10", seed=seed,
    reproducibility=True, device="cpu", use_gpu=False, show_progress=False,
    log_wandb=False))
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train, valid, test = data_preparation(config, dataset)
model = SASRec(config, train._dataset).to(config["device"])
times = {"train": [], "eval": []}
last_valid = []
class Timed(Trainer):
  def _train_epoch(self, *a, **k):
    t = time.time(); r = super()._train_epoch(*a, **k); times["train"].append(time.time() - t)
    return r
  def _valid_epoch(self, *a, **k):
    t = time.time(); r = super()._valid_epoch(*a, **k); times["eval"].append(time.time() - t)
    last_valid[:] = [r]
    return r
trainer = Timed(config, model)
trainer.saved_model_file = os.path.join(out, "best.pth")
resume = os.path.join(out, "resume.pth")
def save_resume(epoch_idx, valid_score):
  state = dict(epoch=epoch_idx, cur_step=trainer.cur_step,
               best_valid_score=trainer.best_valid_score,
               best_valid_result=trainer.best_valid_result, model=model.state_dict(),
               optimizer=trainer.optimizer.state_dict(), shuffle=train.generator.get_state(),
               torch_rng=torch.get_rng_state(), numpy_rng=np.random.get_state(),
               python_rng=random.getstate(), times=times)
  torch.save(state, resume + ".tmp")
  os.replace(resume + ".tmp", resume)
  with open(os.path.join(out, "progress.txt"), "a") as f:
    f.write(f"epoch {epoch_idx + 1} train {times['train'][-1]:.1f} s valid {last_valid[0]}\n")
if os.path.exists(resume):
  state = torch.load(resume)
  trainer.start_epoch = state["epoch"] + 1
  trainer.cur_step = state["cur_step"]
  trainer.best_valid_score = state["best_valid_score"]
  trainer.best_valid_result = state["best_valid_result"]
  model.load_state_dict(state["model"])
  trainer.optimizer.load_state_dict(state["optimizer"])
  train.generator.set_state(state["shuffle"])
  torch.set_rng_state(state["torch_rng"])
  np.random.set_state(state["numpy_rng"])
  random.setstate(state["python_rng"])
  times = state["times"]
  print(f"resuming after epoch {trainer.start_epoch}", file=sys.stderr)
# A resumed run that had already stopped (early, or at the epoch cap) only tests; fit() would
# first overwrite best.pth with the current model.
if not (trainer.cur_step > patience or trainer.start_epoch >= epochs):
  trainer.fit(train, valid, saved=True, show_progress=False, callback_fn=save_resume)
t = time.time(); test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
test_seconds = time.time() - t
samples = len(train._dataset)
result = dict(
    side="recbole", seed=seed, samples_per_epoch=samples, epochs=len(times["train"]),
    best_epoch=len(times["train"]) - trainer.cur_step,
    epoch_seconds=times["train"], eval_seconds=times["eval"], test_seconds=test_seconds,
    samples_per_second=samples * len(times["train"]) / sum(times["train"]),
    best_valid_ndcg10=float(trainer.best_valid_score),
    test={k: float(v) for k, v in test_result.items()},
    peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
with open(os.path.join(out, "result.json"), "w") as f:
  json.dump(result, f)
print(json.dumps(result))
'''


# `python -m vidrec_jax.main ARGS`, then this process's peak memory on stderr.
VIDREC_DRIVER = r'''
import resource, runpy, sys
sys.argv = ["vidrec_jax.main"] + sys.argv[1:]
try:
  runpy.run_module("vidrec_jax.main", run_name="__main__")
finally:
  print(f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}",
        file=sys.stderr)
'''


# Runs inside RecBole's virtualenv: argv = normalize_all (0/1), out file. Builds RecBole's
# ML-100K dataset and leave-one-out split with the accuracy runs' settings and writes, for every
# user (raw token), its valid and test target items (raw tokens) as JSON.
SPLIT_DRIVER = r'''
import json, sys, types, importlib.util, os
normalize_all, out = bool(int(sys.argv[1])), sys.argv[2]
ray = types.ModuleType("ray"); ray.tune = types.ModuleType("ray.tune")
sys.modules["ray"], sys.modules["ray.tune"] = ray, ray.tune
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
root = os.path.join(importlib.util.find_spec("recbole").submodule_search_locations[0],
                    "dataset_example")
config = Config(model="SASRec", dataset="ml-100k", config_dict=dict(
    data_path=root, USER_ID_FIELD="user_id", ITEM_ID_FIELD="item_id", TIME_FIELD="timestamp",
    load_col={"inter": ["user_id", "item_id", "timestamp"]}, MAX_ITEM_LIST_LENGTH=50,
    loss_type="CE", train_neg_sample_args=None, normalize_all=normalize_all,
    eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
               "group_by": "user"}, device="cpu", use_gpu=False, show_progress=False,
    log_wandb=False))
dataset = create_dataset(config)
_, valid, test = data_preparation(config, dataset)
split = {}
for k, loader in ((0, valid), (1, test)):
  feat = loader._dataset.inter_feat
  users = dataset.id2token("user_id", feat["user_id"].numpy())
  items = dataset.id2token("item_id", feat["item_id"].numpy())
  for u, i in zip(users, items):
    split.setdefault(str(u), [None, None])[k] = str(i)
with open(out, "w") as f:
  json.dump(dict(sorted(split.items(), key=lambda kv: int(kv[0]))), f, indent=0)
print(len(split), "users")
'''


def prepare_data() -> None:
  """Writes ML-100K once, where every vidrec run reads it."""
  data = os.path.join(_ROOT.value, "ml100k_data")
  r = subprocess.run([sys.executable, "-m", "vidrec_jax.main",
                      f"--config={REPO}/configs/movielens.py", f"--config.data.data_dir={data}",
                      f"--workdir={os.path.join(_ROOT.value, 'generate')}", "--mode=generate"],
                     capture_output=True, text=True, cwd=REPO, check=False)
  if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit("writing ML-100K failed")


def ensure_venv() -> str:
  """RecBole's virtualenv (built once); returns its python."""
  py = os.path.join(_VENV.value, "bin", "python")
  marker = os.path.join(_VENV.value, ".ready")
  if not os.path.exists(marker):
    subprocess.run([sys.executable, "-m", "venv", _VENV.value], check=True)
    pip = [py, "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["torch==2.13.0", "numpy<2", "pandas<2.2", "scipy", "scikit-learn",
                          "colorlog", "colorama", "tensorboard", "texttable", "thop", "plotly",
                          "psutil", "tabulate", "pyyaml", "tqdm"], check=True)
    subprocess.run(pip + ["--no-deps", "recbole==1.2.1"], check=True)
    open(marker, "w").close()
  return py


def run_recbole(seed: int, epochs: int, patience: int) -> dict:
  """Runs RecBole's SASRec, going on from where an earlier run on the same --root stopped."""
  out = os.path.join(_ROOT.value, f"recbole_{seed}_{epochs}_{patience}_{_THREADS.value}")
  if not patience:  # a speed run measures afresh
    subprocess.run(["rm", "-rf", out], check=True)
  os.makedirs(out, exist_ok=True)
  if os.path.exists(os.path.join(out, "result.json")):
    with open(os.path.join(out, "result.json")) as f:
      return json.load(f)
  r = subprocess.run([ensure_venv(), "-c", RECBOLE_DRIVER, str(seed), str(epochs),
                      str(patience), out, str(_THREADS.value)], capture_output=True, text=True,
                     cwd=out, check=False)  # recbole writes log_tensorboard/ into its working dir
  if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(f"recbole failed with exit status {r.returncode}")
  return json.loads(r.stdout.strip().splitlines()[-1])


def run_vidrec(seed: int, epochs: int, patience: int) -> dict:
  workdir = os.path.join(_ROOT.value, f"vidrec_{seed}_{epochs}")
  subprocess.run(["rm", "-rf", workdir], check=True)
  args = [f"--config={REPO}/configs/movielens.py:sasrec,seed={seed}", f"--workdir={workdir}",
          f"--config.train.steps={epochs * STEPS_PER_EPOCH}",
          f"--config.train.early_stopping={patience}",
          f"--config.data.data_dir={os.path.join(_ROOT.value, 'ml100k_data')}"]
  if not patience:  # speed runs: no evaluation during training
    args += ["--config.train.eval_every=0", "--config.train.best_metric="]
  t = time.time()
  r = subprocess.run([sys.executable, "-c", VIDREC_DRIVER] + args, capture_output=True,
                     text=True, cwd=REPO, check=False)
  if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(f"vidrec failed with exit status {r.returncode}")
  wall = time.time() - t
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    m = json.load(f)
  sort_s = [float(x) for x in re.findall(r"full sort of valid: .* in ([0-9.]+) s", r.stderr)]
  rss = [float(x) for x in re.findall(r"peak_rss_mb=([0-9.]+)", r.stderr)]
  best = m.get("train/best_step", m.get("train/last_step", epochs * STEPS_PER_EPOCH))
  last = m.get("train/last_step", epochs * STEPS_PER_EPOCH)
  return dict(side="vidrec", seed=seed, samples_per_second=m["train/samples_per_second"],
              best_valid_ndcg10=m["valid/ndcg@10"],
              epochs=last / STEPS_PER_EPOCH, best_epoch=best / STEPS_PER_EPOCH, wall=wall,
              epoch_seconds=[97171 / m["train/samples_per_second"]],
              eval_seconds=sort_s or [m["valid/full_sort_seconds"]],
              test={"hit@10": m["test/hr@10"], "ndcg@10": m["test/ndcg@10"],
                    "mrr@10": m["test/mrr@10"], "hit@20": m["test/hr@20"],
                    "ndcg@20": m["test/ndcg@20"]},
              peak_rss_mb=rss[-1] if rss else float("nan"))


def _mean_std(xs):
  xs = [x for x in xs if x == x]
  return stats.fmt(xs, 4) if xs else "–"


def dump_split() -> None:
  """RecBole's valid and test item of every user, with its timestamp normalisation (normalize_all,
  on by default and in the accuracy runs: min-max to float32, which ties timestamps about a
  second apart) and without it. tests/fixtures/recbole_ml100k_split.json is the default's dump;
  tests/data/recbole_split_test.py checks it against our split."""
  for normalize in (0, 1):
    out = os.path.join(_ROOT.value, f"recbole_split_normalize_all_{normalize}.json")
    subprocess.run([ensure_venv(), "-c", SPLIT_DRIVER, str(normalize), out], check=True,
                   cwd=_ROOT.value)
    print(f"wrote {out}")


def main(_):
  os.makedirs(_ROOT.value, exist_ok=True)
  if _PART.value == "split":
    dump_split()
    return
  if "vidrec" in _SIDES.value:
    prepare_data()
  runners = {"recbole": run_recbole, "vidrec": run_vidrec}
  results = {"speed": {}, "accuracy": {}}
  if _PART.value in ("speed", "both"):
    for side in _SIDES.value:
      results["speed"][side] = runners[side](0, _SPEED_EPOCHS.value, 0)
      print(json.dumps(results["speed"][side]), flush=True)
  if _PART.value in ("accuracy", "both"):
    for side in _SIDES.value:
      results["accuracy"][side] = []
      for seed in _SEEDS.value:
        results["accuracy"][side].append(runners[side](int(seed), _MAX_EPOCHS.value, 10))
        print(json.dumps(results["accuracy"][side][-1]), flush=True)
  lines = ["| | " + " | ".join(_SIDES.value) + " |", "|---" * (len(_SIDES.value) + 1) + "|"]
  for label, fn in (
      ("best valid NDCG@10 (chooses the checkpoint)", lambda r: r.get("best_valid_ndcg10",
                                                                        float("nan"))),
      ("test HR@10", lambda r: r["test"]["hit@10"]),
      ("test NDCG@10", lambda r: r["test"]["ndcg@10"]),
      ("test MRR@10", lambda r: r["test"]["mrr@10"]),
      ("epochs to the best valid NDCG@10", lambda r: r["best_epoch"])):
    row = [_mean_std([fn(r) for r in results["accuracy"].get(s, [])]) for s in _SIDES.value]
    lines.append(f"| {label} | " + " | ".join(row) + " |")
  acc = results["accuracy"]
  if all(len(acc.get(side, [])) > 1 for side in ("vidrec", "recbole")):
    # Different libraries: seed numbers do not pair initialisations, so Welch, not paired.
    lines.append("")
    lines.append("test NDCG@10: " + stats.verdict([r["test"]["ndcg@10"] for r in acc["vidrec"]],
                                                 [r["test"]["ndcg@10"] for r in acc["recbole"]],
                                                 ("vidrec_jax", "RecBole"), "welch"))
    lines.append("")
  for label, fn in (
      ("training samples/s (trained targets/s)", lambda r: r["samples_per_second"]),
      ("transformer positions/s", lambda r: r["samples_per_second"] * POSITIONS[r["side"]]),
      ("seconds per epoch", lambda r: statistics.mean(r["epoch_seconds"])),
      ("seconds per full-sort evaluation (valid)", lambda r: statistics.median(
          r["eval_seconds"]) if r["eval_seconds"] else float("nan")),
      ("peak memory MB", lambda r: r["peak_rss_mb"])):
    row = [f"{fn(results['speed'][s]):.1f}" if s in results["speed"] else "–"
           for s in _SIDES.value]
    lines.append(f"| {label} (speed run) | " + " | ".join(row) + " |")
  table = "\n".join(lines)
  print(table)
  with open(os.path.join(_ROOT.value, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  app.run(main)
