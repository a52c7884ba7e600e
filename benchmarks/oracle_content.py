"""How far the multi-task model gets when its content tower is given the TRUE latent factors.

Writes a copy of a world's feature cache in which every frame's features are the video's true
factor one-hots (palette, shape, direction, speed; zero-padded to the cache's width, the
metadata unchanged), then trains `configs/multitask.py:VARIANT` on it against the real cache's
run. The difference splits the gap to the targets: what the ranker cannot learn from the logs
even from perfect content, and what the content tower fails to recover from pixels.

  PYTHONPATH=. python benchmarks/oracle_content.py --root=/tmp/vidrec_mt_bench --seed=0 \\
      --variant=ple+given+affinity+duration

ROOT is benchmarks/multitask.py's: the world (ROOT/data_seedS) and its feature cache
(ROOT/features_seedS) must exist (that script makes them); the run goes to
ROOT/oracle_VARIANT_seedS and its metrics are printed beside the real run's, when that exists.
"""

import json
import os

import numpy as np
from absl import app
from absl import flags
from array_record.python import array_record_module
from main_runner import REPO  # benchmarks/main_runner.py
from main_runner import run

from configs import multitask
from vidrec_jax.data import features
from vidrec_jax.data import world as world_lib

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_mt_bench", "benchmarks/multitask.py's root.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed s: world data.dataset.seed = 17 + s.")
_VARIANT = flags.DEFINE_string("variant", "ple+given+affinity+duration",
                               "configs/multitask.py variant, '+' joining its words.")
KEYS = ("test/cold/oracle_gain", "test/warm/oracle_gain", "valid/cold/oracle_gain",
        "valid/warm/oracle_gain", "test/watch_time/mae", "test/all/like_auc")


def write_oracle_cache(real: str, out: str, world_seed: int) -> None:
  """`real`'s cache with each frame's features replaced by its video's true factors."""
  meta = features.read_meta(real)
  table = features.load_cache(real)
  cfg = multitask.get_config(f"world_seed={world_seed}").data.dataset
  factors = world_lib.World(cfg).features
  os.makedirs(out, exist_ok=True)
  writer = array_record_module.ArrayRecordWriter(os.path.join(out, meta["shards"][0] + ".tmp"),
                                                 "group_size:1")
  for vid, f in sorted(table.items()):
    x = np.zeros_like(f)
    x[:, :factors.shape[1]] = factors[vid][None]
    writer.write(features.encode_record(vid, np.arange(len(f)), x))
  writer.close()
  os.replace(os.path.join(out, meta["shards"][0] + ".tmp"), os.path.join(out, meta["shards"][0]))
  features.write_meta(out, meta)


def main(_):
  root, s, v = _ROOT.value, _SEED.value, _VARIANT.value
  world = f"world_seed={17 + s},seed={s}"
  cache = os.path.join(root, f"oracle_features_seed{s}")
  if not os.path.exists(os.path.join(cache, features.META)):
    write_oracle_cache(os.path.join(root, f"features_seed{s}"), cache, 17 + s)
  name = v.replace("+", "_")
  workdir = os.path.join(root, f"oracle_{name}_seed{s}")
  if not os.path.exists(os.path.join(workdir, "eval", "metrics.json")):
    secs, _ = run([f"--config={os.path.join(REPO, 'configs', 'multitask.py')}:"
                   f"{v.replace('+', ',')},{world}", f"--workdir={workdir}",
                   f"--config.data.data_dir={os.path.join(root, f'data_seed{s}')}",
                   f"--config.data.feature_cache={cache}"])
    print(f"oracle run: {secs:.0f} s")
  print("| content | " + " | ".join(KEYS) + " |")
  print("|---" * (len(KEYS) + 1) + "|")
  for label, wd in (("true factors", workdir),
                    ("features", os.path.join(root, f"{name}_seed{s}"))):
    path = os.path.join(wd, "eval", "metrics.json")
    if os.path.exists(path):
      with open(path) as f:
        m = json.load(f)
      print(f"| {label} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |")


if __name__ == "__main__":
  app.run(main)
