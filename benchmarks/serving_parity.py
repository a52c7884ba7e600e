"""Does a bundle give exactly the lists of --mode=recommend on a trained workdir? Over many users.

  python benchmarks/serving_parity.py --bundle=E --users=200 \\
      --config=configs/microlens.py:frozen,seed=0 --workdir=W --checkpoint=best [--config.X=Y ...]

The run's flags are `python -m vidrec_jax.main`'s (the config, its overrides, the workdir and
--checkpoint). Users are drawn with --seed from the bundle's; each
user's list comes from `vidrec_jax.recommend.recommend_servable` over the checkpoint's servable,
built once (what --mode=recommend builds, prints and writes) and from
`serving.load(E).recommend`; printed: how many lists are identical (same
videos, same order) and the largest score difference.
"""

import sys

import numpy as np
from absl import app
from absl import flags

from vidrec_jax import main as main_lib  # its flags: --config, --workdir, --checkpoint

_BUNDLE = flags.DEFINE_string("bundle", None, "The bundle --mode=export wrote for the run.")
_USERS = flags.DEFINE_integer("users", 200, "Users compared.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the users drawn.")


def main(argv):
  del argv
  from vidrec_jax import experiment  # pylint: disable=g-import-not-at-top
  from vidrec_jax import recommend  # pylint: disable=g-import-not-at-top
  from vidrec_jax import serving  # pylint: disable=g-import-not-at-top
  config, workdir = main_lib._CONFIG.value, main_lib._WORKDIR.value  # pylint: disable=protected-access
  which = main_lib._CHECKPOINT.value  # pylint: disable=protected-access
  with config.unlocked():
    config.mode = "recommend"
  restored = experiment.restore(config, workdir, which, "recommend from")
  bundle = serving.load(_BUNDLE.value)
  users = np.random.default_rng(_SEED.value).permutation(sorted(bundle.users))[:_USERS.value]
  k = bundle.k
  servable = recommend.build(restored, workdir)  # what recommend.recommend builds per call
  same, worst = 0, 0.0
  for u in users:
    want = recommend.recommend_servable(servable, restored[0].run, workdir, str(u), k,
                                        which)["records"]
    got = bundle.recommend(str(u), k)
    if [r["video_id"] for r in got] == [r["video_id"] for r in want]:
      same += 1
      worst = max([worst] + [abs(g["score"] - w["score"]) for g, w in zip(got, want)])
  print(f"{same} of {len(users)} users: identical lists (k={k}, {len(bundle.items)} videos, "
        f"retrieval {bundle.manifest.get('retrieval', {}).get('name', 'exact')}); largest "
        f"score difference in those: {worst:.2e}")
  return 0 if same == len(users) else 1


if __name__ == "__main__":
  flags.mark_flag_as_required("bundle")
  sys.exit(app.run(main))
