"""Which latent factors of the synthetic world the content inputs carry, by linear probes.

For every video: the mean of its cached backbone features over 6 evenly spaced frames, and the
flow histograms (models/flow_stream.py `flow_histograms`) of the same frames from the flow
cache, averaged and maxed over them. A multinomial logistic regression (L2, full batch) is fit
on the warm videos for each factor (palette, shape, direction, speed) and scored on the cold
ones: the accuracy a content tower could reach from each input with a linear read-out.

  PYTHONPATH=. python benchmarks/content_probe.py --root=/tmp/vidrec_mt_bench --seed=0

ROOT is benchmarks/multitask.py's (ROOT/features_seedS; ROOT/flow_seedS is written by its
`hof` or `flow` variant).
"""

import os

import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags
from fitting import full_batch_fit  # benchmarks/fitting.py

from configs import multitask
from vidrec_jax.data import features
from vidrec_jax.data import world as world_lib
from vidrec_jax.models import flow_stream

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_mt_bench", "benchmarks/multitask.py's root.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed s: world data.dataset.seed = 17 + s.")
_L2 = flags.DEFINE_float("l2", 1e-3, "L2 penalty of the probes.")
FACTORS = ("palette", "shape", "direction", "speed")
FRAMES = 6


def probe(x_train, y_train, x_test, y_test, l2: float, steps: int = 2000) -> float:
  """Cold accuracy of a multinomial logistic regression fit on the warm rows."""
  mean, std = x_train.mean(0), x_train.std(0) + 1e-6
  xtr, xte = jnp.asarray((x_train - mean) / std), jnp.asarray((x_test - mean) / std)
  k = int(max(y_train.max(), y_test.max())) + 1
  p = dict(w=jnp.zeros((xtr.shape[1], k)), b=jnp.zeros(k))

  def loss(p):
    logits = xtr @ p["w"] + p["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y_train)).mean()
    return ce + l2 * jnp.sum(jnp.square(p["w"]))

  p = full_batch_fit(loss, p, optax.adam(1e-2), steps)
  return float(np.mean(np.argmax(np.asarray(xte @ p["w"] + p["b"]), -1) == y_test))


def main(_):
  root, seed = _ROOT.value, _SEED.value
  world = world_lib.World(multitask.get_config(f"world_seed={17 + seed}").data.dataset)
  feats = features.load_cache(os.path.join(root, f"features_seed{seed}"))
  flow_dir = os.path.join(root, f"flow_seed{seed}")
  flows = features.load_cache(flow_dir) if os.path.isdir(flow_dir) else None
  rows = {"backbone": [], "flow histograms": [], "both": []}
  keep, labels = [], {f: [] for f in FACTORS}
  for v in world.videos:
    f = feats.get(v.video_id)
    if f is None or (flows is not None and v.video_id not in flows):
      continue
    idx = np.linspace(0, len(f) - 2, FRAMES).astype(int)
    rows["backbone"].append(f[idx].mean(0))
    if flows is not None:
      h = np.asarray(flow_stream.flow_histograms(jnp.asarray(flows[v.video_id][idx])))
      rows["flow histograms"].append(np.concatenate([h.mean(0), h.max(0)]))
      rows["both"].append(np.concatenate([rows["backbone"][-1], rows["flow histograms"][-1]]))
    keep.append(v.cold)
    for name in FACTORS:
      labels[name].append(getattr(v, name))
  cold = np.asarray(keep, bool)
  print(f"world {17 + seed}: {int((~cold).sum())} warm videos to fit, {int(cold.sum())} cold to "
        f"score; cold-video accuracy (chance: 1 / levels)")
  print("| input | " + " | ".join(FACTORS) + " |")
  print("|---" * (len(FACTORS) + 1) + "|")
  for name, x in rows.items():
    if not x:
      continue
    x = np.asarray(x, np.float32)
    accs = [probe(x[~cold], np.asarray(labels[f])[~cold], x[cold], np.asarray(labels[f])[cold],
                  _L2.value) for f in FACTORS]
    print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in accs) + " |")


if __name__ == "__main__":
  app.run(main)
