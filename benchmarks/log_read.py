"""Reading a MicroLens release's interaction log into the run's tables: memory and time per row.

  python benchmarks/log_read.py --root=/tmp/log_read --users=100000,1000000

For each size, writes `MicroLens-<users/1000>k_pairs.csv` (a header, then `user,item,timestamp` rows in
MicroLens-100K's proportions: 7.2 interactions a user, 0.197 videos a user, millisecond
timestamps; 1% of rows repeated as exact duplicates, as a real log's are) and `_title_en.csv`,
then times `microlens.MicroLens().read` (parse, duplicate check, MicroLens' filtering, dense ids,
the leave-one-out split) in a fresh process and records the peak memory that Python allocated
during it (tracemalloc, numpy's arrays included) per row, and the process's peak RSS. No videos:
every item keeps its ID and title (the media check costs per item, not per row).
"""

import json
import os
import subprocess
import sys

from absl import app
from absl import flags

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_log_read", "Release folders go here.")
_USERS = flags.DEFINE_list("users", ["100000", "1000000"], "Users of each size.")
_CHILD = flags.DEFINE_string("child", "", "Internal: read this folder and print the figures.")

PER_USER, VIDEOS_PER_USER, DUPLICATES = 7.2, 0.19738, 0.01


def write_release(folder: str, users: int) -> int:
  """Writes the pairs and titles files in chunks; returns the row count."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  videos = max(1, round(users * VIDEOS_PER_USER))
  rows = 0
  name = f"MicroLens-{users // 1000}k"
  with open(os.path.join(folder, f"{name}_pairs.csv"), "w") as f:
    f.write("user_id,item_id,timestamp\n")
    for start in range(0, users, 50_000):
      u = np.arange(start, min(users, start + 50_000)) + 1
      counts = 5 + rng.poisson(PER_USER - 5, len(u))
      user = np.repeat(u, counts)
      item = rng.zipf(1.3, len(user)) % videos + 1
      time = 1_600_000_000_000 + rng.integers(0, 10**10, len(user))
      dup = rng.random(len(user)) < DUPLICATES
      user, item, time = (np.concatenate([c, c[dup]]) for c in (user, item, time))
      f.write("".join(f"{a},{b},{c}\n" for a, b, c in zip(user, item, time)))
      rows += len(user)
  with open(os.path.join(folder, f"{name}_title_en.csv"), "w") as f:
    f.write("".join(f"{i},title of {i}, with a comma\n" for i in range(1, videos + 1)))
  return rows


def child(folder: str) -> None:
  import resource  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  import tracemalloc  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data.datasets import microlens  # pylint: disable=g-import-not-at-top
  args = {"name": "microlens", "path": folder, "min_interactions": 5, "keep_last": 13}
  rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  tracemalloc.start()
  t0, c0 = time.perf_counter(), time.process_time()
  t = microlens.MicroLens().read(args)
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  print(json.dumps(dict(
      seconds=round(wall, 1), cpu_seconds=round(cpu, 1), peak_traced_mb=round(peak / 2**20, 1),
      peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      rss_before_mb=round(rss0 / 1024, 1), kept=int(len(t.user)),
      users=int(len(t.user_raw)), items=int(len(t.item_raw)),
      split=np.bincount(t.split, minlength=3).tolist())))


def main(argv):
  del argv
  if _CHILD.value:
    child(_CHILD.value)
    return
  for users in map(int, _USERS.value):
    folder = os.path.join(_ROOT.value, f"users_{users}")
    rows_file = os.path.join(folder, "rows.txt")
    if not os.path.exists(rows_file):
      rows = write_release(folder, users)
      with open(rows_file, "w") as f:
        f.write(str(rows))
    rows = int(open(rows_file).read())
    out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={folder}"],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r.update(rows=rows, traced_bytes_per_row=round(r["peak_traced_mb"] * 2**20 / rows))
    print(f"{users} users, {rows} rows: {json.dumps(r)}", flush=True)


if __name__ == "__main__":
  app.run(main)
