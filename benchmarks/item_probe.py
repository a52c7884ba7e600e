"""Which latent factors of the synthetic world a trained model's item vectors carry.

Reads the ranking item vectors of a serving bundle (`--mode=export`) and fits, per factor
(palette, shape, direction, speed), benchmarks/content_probe.py's linear probe on the warm
videos' vectors, scored on the cold ones (whose vectors come from content alone: their IDs are
out of vocabulary). Where content_probe.py asks what the inputs carry, this asks what the
trained content tower kept.

  python -m vidrec_jax.main --config=configs/multitask.py:world_seed=17 --workdir=W \\
      --mode=export --export_dir=E
  PYTHONPATH=. python benchmarks/item_probe.py --bundle=E --world_seed=17
"""

import os

import numpy as np
from absl import app
from absl import flags
from content_probe import FACTORS  # benchmarks/content_probe.py
from content_probe import probe

from configs import multitask
from vidrec_jax.data import world as world_lib

_BUNDLE = flags.DEFINE_string("bundle", None, "A serving bundle folder (--mode=export).")
_WORLD_SEED = flags.DEFINE_integer("world_seed", 17, "The world's data.dataset.seed.")


def main(_):
  with np.load(os.path.join(_BUNDLE.value, "items.npz")) as z:
    vectors, ids = z["ranking"], z["video_ids"]
  world = world_lib.World(multitask.get_config(f"world_seed={_WORLD_SEED.value}").data.dataset)
  cold = np.array([world.videos[int(v)].cold for v in ids])
  print(f"{_BUNDLE.value}: {int((~cold).sum())} warm item vectors to fit, {int(cold.sum())} "
        "cold to score; cold-video accuracy (chance: 1 / levels)")
  print("| " + " | ".join(FACTORS) + " |")
  print("|---" * len(FACTORS) + "|")
  accs = []
  for name in FACTORS:
    y = np.array([getattr(world.videos[int(v)], name) for v in ids])
    accs.append(probe(vectors[~cold], y[~cold], vectors[cold], y[cold],
                      flags.FLAGS.l2))  # content_probe.py's --l2
  print("| " + " | ".join(f"{a:.3f}" for a in accs) + " |")


if __name__ == "__main__":
  flags.mark_flag_as_required("bundle")
  app.run(main)
