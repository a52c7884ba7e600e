"""Scale: every phase of a run, end to end from an empty workdir, at growing catalog sizes, with
users and interactions in MicroLens-100K's proportions (100,000 users and ~720,000 clicks for
19,738 videos), recording per phase the wall time, the peak memory of the whole process tree
(the main process and its loader workers) and the disk the workdir gains, then each phase's
growth exponent between consecutive sizes (log time ratio / log size ratio).

  python benchmarks/scale.py --root=/tmp/scale --videos=1000,5000 --configs=multitask

Configs:
  multitask  configs/multitask.py (the demo's default model) on the synthetic world:
             generate -> extract (feature and flow caches) -> train -> eval -> export ->
             recommend
  frozen     configs/microlens.py:frozen on the same world written as a MicroLens release
             (`--config.data.dataset.layout=microlens`, in WORKDIR_release), its cold videos
             published late (benchmarks/main_runner.py LATE_PUBLISH, as benchmarks/microlens.py
             reads it): generate ->
             build (the release read into the run's TFDS dataset) -> extract (the feature
             cache) -> train -> eval (both protocols, every user, the full catalog) ->
             export -> recommend

`cpu_seconds` is the phase's user + system CPU time, its worker processes' included: unlike
the wall time, it hardly moves when other jobs share the machine.

Training runs --epochs passes over the training interactions (steps from the world's size),
without periodic evaluation; its phase includes the final evaluation that `--mode=train`
always runs, which the `eval` phase then measures alone. Memory is sampled every 0.5 s from
/proc: `rss` sums the processes' resident sets (pages shared between workers counted in each),
`pss` their proportional sets (shared pages split): the machine's real use lies at `pss`.

Results go to ROOT/scale.json (rewritten after every phase: an interrupted run keeps what it
measured; a rerun skips the phases already measured) and the table to --out.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import main_runner  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, main_runner.REPO)

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_scale", "Workdirs and scale.json go here.")
_VIDEOS = flags.DEFINE_list("videos", ["1000", "5000", "20000"], "Catalog sizes.")
_CONFIGS = flags.DEFINE_list("configs", ["multitask", "frozen"], "multitask, frozen.")
_EPOCHS = flags.DEFINE_float("epochs", 1.0, "Passes over the training interactions.")
_OUT = flags.DEFINE_string("results", os.path.join(main_runner.REPO, "benchmarks", "results",
                                               "scale.md"), "The results table.")
_WORKERS = flags.DEFINE_integer("workers", 2, "data.num_workers of every phase.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Only write --results from ROOT/scale.json "
                                "(e.g. one merged from several roots); run nothing.")

USERS_PER_VIDEO = main_runner.USERS_PER_VIDEO
CONFIGS = {"multitask": "configs/multitask.py", "frozen": "configs/microlens.py:frozen"}


def world_args(videos: int) -> list[str]:
  return main_runner.microlens_world(videos)


class TreeMemory:
  """Peak summed RSS and PSS (MiB) of a process and all its descendants, sampled from /proc."""

  def __init__(self, pid: int, every: float = 0.5):
    self.pid, self.every = pid, every
    self.rss = self.pss = 0.0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _tree(self) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
      if not name.isdigit():
        continue
      try:
        with open(f"/proc/{name}/stat") as f:
          ppid = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        continue
      children.setdefault(ppid, []).append(int(name))
    out, todo = [], [self.pid]
    while todo:
      p = todo.pop()
      out.append(p)
      todo.extend(children.get(p, []))
    return out

  @staticmethod
  def _sizes(pid: int) -> tuple[float, float]:
    rss = pss = 0.0
    try:
      with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
          if line.startswith("Rss:"):
            rss = float(line.split()[1]) / 1024
          elif line.startswith("Pss:"):
            pss = float(line.split()[1]) / 1024
    except OSError:
      pass
    return rss, pss

  def _run(self):
    while not self._stop.is_set():
      sizes = [self._sizes(p) for p in self._tree()]
      self.rss = max(self.rss, sum(s[0] for s in sizes))
      self.pss = max(self.pss, sum(s[1] for s in sizes))
      self._stop.wait(self.every)

  def stop(self) -> tuple[float, float]:
    self._stop.set()
    self._thread.join()
    return self.rss, self.pss


def disk_mb(path: str) -> float:
  total = 0
  for d, _, names in os.walk(path):
    for n in names:
      p = os.path.join(d, n)
      if not os.path.islink(p):
        total += os.path.getsize(p)
  return total / 2**20


def measure(args: list[str], dirs: list[str], log: str) -> dict:
  """Runs one phase (`python -m vidrec_jax.main ARGS`) and measures it, the disk as what
  `dirs` gain; exits on failure."""
  cmd = [sys.executable, "-m", "vidrec_jax.main"] + args

  def disk():
    return sum(disk_mb(d) for d in dirs if os.path.isdir(d))
  before = disk()
  t = time.time()
  with open(log, "w") as f:
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=main_runner.REPO)
    mem = TreeMemory(p.pid)
    # wait4: the phase's CPU time, its loader workers' included (reaped by the main process)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = rc = os.waitstatus_to_exitcode(status)
  secs = time.time() - t
  rss, pss = mem.stop()
  if rc:
    with open(log) as f:
      print(f.read()[-3000:])
    raise SystemExit(f"{' '.join(cmd)} failed with exit status {rc} (log: {log})")
  return dict(seconds=round(secs, 1), cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1),
              peak_rss_mb=round(rss), peak_pss_mb=round(pss),
              disk_mb=round(disk() - before, 1))


def train_steps(workdir: str, name: str, batch: int) -> int:
  """Steps for --epochs passes over the run's training examples: the multitask config's
  training impressions, the next-item trainer's history windows (its epoch, as it logs
  `steps_per_epoch`: a window is a user's sequence of up to `data.history.max_len` targets)."""
  # pylint: disable=g-import-not-at-top
  if name == "multitask":
    from vidrec_jax.data import tfds_world
    from configs import multitask
    n = len(tfds_world.open_source(os.path.join(workdir, "data"), "impressions", "train"))
    batch *= multitask.get_config("").data.impressions_per_clip  # impressions a step
  else:
    from vidrec_jax.data import sequences
    from vidrec_jax.data import tfds_logs
    from configs import microlens
    h = microlens.get_config(CONFIGS[name].partition(":")[2]).data.history
    train = tfds_logs.open_split(os.path.join(workdir, "data"), "interactions",
                                 "train").columns
    n = len(sequences.training_windows(sequences.user_sequences(
        train["user_id"], train["video_id"], train["order"]), h.max_len, h.stride))
  # pylint: enable=g-import-not-at-top
  return max(1, math.ceil(_EPOCHS.value * n / batch))


def phases(name: str, workdir: str, videos: int) -> list[tuple[str, list[str]]]:
  """(phase, main.py arguments) in order; the train phase's steps are filled in later."""
  base = [f"--config={CONFIGS[name]}", f"--workdir={workdir}",
          f"--config.data.num_workers={_WORKERS.value}"]
  if name == "multitask":
    world = base + world_args(videos)
    return [("generate", world + ["--mode=generate"]),
            ("extract", world + ["--mode=extract"]),
            ("train", world + ["--mode=train", "--config.train.eval_every=0"]),
            ("eval", world + ["--mode=eval"]),
            ("export", world + ["--mode=export"]),
            ("recommend", world + ["--mode=recommend", "--user=7"])]
  gen = ["--config=configs/multitask.py", f"--workdir={release_dir(workdir)}", "--mode=generate",
         "--config.data.dataset.layout=microlens"] + main_runner.microlens_world(videos, True)
  release = base + [
      f"--config.data.dataset.path={os.path.join(release_dir(workdir), 'data', 'microlens')}",
      "--config.train.early_stopping=0"]
  return [("generate", gen),
          ("build", release + ["--mode=generate"]),
          ("extract", release + ["--mode=extract"]),
          ("train", release + ["--mode=train", "--config.train.eval_every=0"]),
          ("eval", release + ["--mode=eval"]),
          ("export", release + ["--mode=export"]),
          ("recommend", release + ["--mode=recommend", "--user=7"])]


def release_dir(workdir: str) -> str:
  """Where the `frozen` config's world is written in MicroLens layout (its own workdir)."""
  return workdir + "_release"


def exponents(results: dict, name: str) -> dict:
  """phase -> [exponent of wall time, of CPU time (None where a size lacks it), of peak PSS,
  of disk] between consecutive sizes."""
  sizes = sorted(int(v) for v in results.get(name, {}))
  out = {}
  for a, b in zip(sizes, sizes[1:]):
    ra, rb = results[name][str(a)], results[name][str(b)]
    for phase in rb:
      if phase in ra and isinstance(rb[phase], dict):
        def exp(key):
          x, y = ra[phase].get(key, 0), rb[phase].get(key, 0)
          return round(math.log(y / x) / math.log(b / a), 2) if x > 0 and y > 0 else None
        out.setdefault(phase, {})[f"{a}->{b}"] = [exp("seconds"), exp("cpu_seconds"),
                                                  exp("peak_pss_mb"), exp("disk_mb")]
  return out


def table(results: dict) -> str:
  lines = ["# Scale: every phase end to end (benchmarks/scale.py)", "",
           "Each row: `python benchmarks/scale.py --configs=CONFIG --videos=VIDEOS` (a fresh "
           f"workdir, --epochs={_EPOCHS.value:g}); the exact arguments of every phase are in "
           "ROOT/scale.json.", "",
           "| config | videos | users | phase | wall s | CPU s | peak RSS MB (sum) | "
           "peak PSS MB (sum) | disk MB |", "|---|---|---|---|---|---|---|---|---|"]
  for name in results:
    if name.startswith("_"):
      continue
    for v in sorted(results[name], key=int):
      for phase, r in results[name][v].items():
        if isinstance(r, dict):
          lines.append(f"| {name} | {v} | {round(int(v) * USERS_PER_VIDEO)} | {phase} | "
                       f"{r['seconds']} | {r.get('cpu_seconds', '–')} | {r['peak_rss_mb']} | "
                       f"{r['peak_pss_mb']} | "
                       f"{r['disk_mb']} |")
  lines += ["", "Growth exponents (log ratio / log size ratio): [wall time, CPU time, peak PSS, "
            "disk]", ""]
  for name in results:
    if not name.startswith("_"):
      for phase, e in exponents(results, name).items():
        lines.append(f"- {name} {phase}: " + ", ".join(f"{k} {v}" for k, v in e.items()))
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  os.makedirs(_ROOT.value, exist_ok=True)
  path = os.path.join(_ROOT.value, "scale.json")
  results = json.load(open(path)) if os.path.exists(path) else {}
  if _TABLE_ONLY.value:
    main_runner.write(_OUT.value, table(results))
    return
  for name in _CONFIGS.value:
    if name not in CONFIGS:
      raise SystemExit(f"--configs: {name!r}; allowed: {', '.join(CONFIGS)}")
    for videos in map(int, _VIDEOS.value):
      workdir = os.path.join(_ROOT.value, f"{name}_{videos}")
      done = results.setdefault(name, {}).setdefault(str(videos), {})
      if not done:  # every size starts from empty workdirs
        for d in (workdir, release_dir(workdir)):
          shutil.rmtree(d, ignore_errors=True)
      for phase, args in phases(name, workdir, videos):
        if phase in done:
          continue
        if phase == "train":
          batch = 64
          args = args + [f"--config.train.steps={train_steps(workdir, name, batch)}",
                         f"--config.data.batch_size={batch}"]
        print(f"{name} {videos} videos: {phase} ...", flush=True)
        done[phase] = measure(args, [workdir, release_dir(workdir)],
                              os.path.join(_ROOT.value, f"{name}_{videos}_{phase}.log"))
        done[phase]["args"] = args[1:]
        print(f"  {done[phase]}", flush=True)
        with open(path, "w") as f:
          json.dump(results, f, indent=1)
        main_runner.write(_OUT.value, table(results))


if __name__ == "__main__":
  app.run(main)
