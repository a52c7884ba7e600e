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
