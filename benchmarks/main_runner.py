"""Runs `python -m vidrec_jax.main` for the benchmark scripts (imported from benchmarks/)."""

import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args: list[str]) -> tuple[float, str]:
  """Seconds the run took and its stderr; a failing run prints its log tail and exits."""
  cmd = [sys.executable, "-m", "vidrec_jax.main"] + args
  t = time.time()
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
  if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(f"{' '.join(cmd)} failed with exit status {r.returncode}")
  return time.time() - t, r.stderr


def write(path: str, text: str) -> None:
  """Writes a results table (rewritten after every run, so an interrupted script leaves one)."""
  with open(path, "w") as f:
    f.write(text)


def world_dir(root: str, world: str, own: str) -> str:
  """Where the data, caches and runs of world `world` (a data.dataset.seed) go: ROOT itself for
  the config's own world `own` (the layout from before the scripts took --worlds, so finished
  runs are still read), ROOT/world{W} for another."""
  return root if str(world) == str(own) else os.path.join(root, f"world{world}")


USERS_PER_VIDEO = 100_000 / 19_738  # MicroLens-100K
SLATES_PER_USER = 4  # x 8 impressions: ~7 clicks a user, MicroLens-100K's 7.2
FEED_SLATES_PER_USER = 2  # a feed (exposure_taste > 0) shows liked videos: ~7.6 clicks from 2


# The cold quarter of the catalog published in the last 5% of the horizon: under leave-one-out
# (MicroLens' split) most of their clicks are then users' last ones, so the test period has
# items new to training (with the default 70%, every item has training clicks).
LATE_PUBLISH = ["--config.data.dataset.train_until=0.95", "--config.data.dataset.valid_until=0.975"]


def microlens_world(videos: int, late_publish: bool = False,
                    exposure_taste: float = 0.0) -> list[str]:
  """Overrides of a synthetic world with `videos` videos and users and clicks in MicroLens-100K's
  proportions (100,000 users and ~720,000 clicks for 19,738 videos); `late_publish` adds
  LATE_PUBLISH; `exposure_taste` > 0 logs the slates of a segment-level feed
  (data.dataset.exposure_taste) with fewer slates a user, for the same clicks."""
  users = round(videos * USERS_PER_VIDEO)
  slates = FEED_SLATES_PER_USER if exposure_taste > 0 else SLATES_PER_USER
  return [f"--config.data.dataset.num_videos={videos}", f"--config.data.dataset.num_users={users}",
          f"--config.data.dataset.slates_per_user={slates}"] + (
              LATE_PUBLISH if late_publish else []) + (
                  [f"--config.data.dataset.exposure_taste={exposure_taste:g}"]
                  if exposure_taste > 0 else [])
