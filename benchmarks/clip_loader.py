"""Clip throughput of the training loader's sampler on a run's cached features: the CPU time a
loader worker spends per clip (reading the feature and flow caches, whitening, sampling the
segments), without the model.

  python benchmarks/clip_loader.py --config=configs/multitask.py --workdir=W \
      --config.data.dataset.num_videos=20000 --config.data.dataset.num_users=101327 \
      --config.data.dataset.slates_per_user=4

W is a workdir whose dataset and caches exist (`--mode=extract` wrote them). Clips are drawn as
training draws them: videos of the training split's rows, uniformly over rows (so popular
videos come up as often as in training), one seeded random view each. The first --warmup clips
are not timed (the cache readers open). CPU time is the process's (time.process_time), which
hardly moves when other jobs share the machine; wall time is printed beside it.
"""

import time

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", "configs/multitask.py", "Config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir with the dataset and caches.",
                               required=True)
_CLIPS = flags.DEFINE_integer("clips", 3000, "Clips to time.")
_WARMUP = flags.DEFINE_integer("warmup", 100, "Clips before timing.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the videos drawn and their views.")


def main(_):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vidrec_jax import run_spec  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train.context import make_context  # pylint: disable=g-import-not-at-top

  run = run_spec.resolve(_CONFIG.value)
  ctx = make_context(run, _WORKDIR.value, prepare=False)
  t0 = time.process_time()
  whitening = ctx.whitening
  fit = time.process_time() - t0
  sampler = ctx.sampler(run.data.cache_videos)
  rng = np.random.default_rng(_SEED.value)
  videos = np.asarray(ctx.train_video_ids)[
      rng.integers(0, len(ctx.train_video_ids), _WARMUP.value + _CLIPS.value)]
  for v in videos[:_WARMUP.value]:
    sampler.clip(int(v), rng)
  cpu, wall = time.process_time(), time.perf_counter()
  for v in videos[_WARMUP.value:]:
    sampler.clip(int(v), rng)
  cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
  print(f"frame source {type(sampler.frames).__name__}, clip inputs {sampler.keys}, "
        f"{sampler.num_segments} segments; whitening "
        f"{'off' if whitening is None else f'{whitening.dim} columns (fit {fit:.1f} CPU s)'}")
  print(f"{_CLIPS.value} clips of {len(set(videos[_WARMUP.value:].tolist()))} distinct videos: "
        f"{1e3 * cpu / _CLIPS.value:.2f} CPU ms a clip ({_CLIPS.value / cpu:.0f} clips per CPU s); "
        f"wall {1e3 * wall / _CLIPS.value:.2f} ms a clip")


if __name__ == "__main__":
  app.run(main)
