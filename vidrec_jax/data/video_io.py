"""Writing and decoding real video files with PyAV, and TSN-style frame sampling."""

from __future__ import annotations

import os

import av
import numpy as np

from vidrec_jax import files

# Container suffix -> (encoder, pixel format).  mp4 uses H.264, avi MPEG-4 part 2, flv Sorenson.
ENCODERS = {"mp4": ("libx264", "yuv420p"), "avi": ("mpeg4", "yuv420p"), "flv": ("flv", "yuv420p")}


class VideoDecodeError(ValueError):
  """A file that is missing, empty, truncated or not a decodable video."""


def write_video(path: str, frames: np.ndarray, fps: int) -> None:
  """Encodes uint8 frames (T, H, W, 3) into `path`; the suffix picks the container and codec."""
  suffix = os.path.splitext(path)[1].lstrip(".").lower()
  if suffix not in ENCODERS:
    raise ValueError(f"video suffix {suffix!r} not supported for writing; "
                     f"allowed: {sorted(ENCODERS)}")
  codec, pix_fmt = ENCODERS[suffix]
  # A crash mid-write never leaves a half file under the real name.
  with files.atomic_path(path) as tmp, av.open(tmp, mode="w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = pix_fmt
    if codec == "libx264":
      stream.options = {"crf": "18", "preset": "veryfast"}
    else:
      stream.bit_rate = 800_000
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def decode_video(path: str, size: int | None = None) -> np.ndarray:
  """Decodes every frame of `path` to uint8 RGB (T, size, size, 3) (native size if None).

  Raises:
    VideoDecodeError: naming the path, when the file is missing, empty or yields no frame.
  """
  try:
    if os.path.getsize(path) == 0:
      raise VideoDecodeError(f"{path}: zero-byte file")
    frames = []
    with av.open(path) as container:
      if not container.streams.video:
        raise VideoDecodeError(f"{path}: no video stream")
      stream = container.streams.video[0]
      stream.thread_type = "SLICE"
      for frame in container.decode(stream):
        if size is not None and (frame.width != size or frame.height != size):
          frame = frame.reformat(width=size, height=size)
        frames.append(frame.to_ndarray(format="rgb24"))
  except VideoDecodeError:
    raise
  except (OSError, av.error.FFmpegError, ValueError) as e:
    raise VideoDecodeError(f"{path}: {type(e).__name__}: {e}") from e
  if not frames:
    raise VideoDecodeError(f"{path}: no decodable frame")
  return np.stack(frames)


def tsn_indices(num_frames: int, num_segments: int, rng: np.random.Generator | None
                ) -> tuple[np.ndarray, np.ndarray]:
  """TSN segment sampling: one frame from each of `num_segments` equal segments.

  Training (`rng` given) draws a random frame inside each segment; evaluation takes the centre.
  A clip shorter than `num_segments` keeps all its frames and pads with mask 0.

  Returns:
    (indices, mask): int32 (num_segments,) frame indices (padding repeats the last frame) and a
    float32 mask that is 1 for real frames.
  """
  if num_frames <= 0:
    raise ValueError(f"num_frames must be positive, got {num_frames}")
  if num_frames < num_segments:
    idx = np.concatenate([np.arange(num_frames),
                          np.full(num_segments - num_frames, num_frames - 1)])
    mask = (np.arange(num_segments) < num_frames).astype(np.float32)
    return idx.astype(np.int32), mask
  # Integer segment starts strictly increase when num_frames >= num_segments, so the sampled
  # frames are distinct and in order.
  starts = np.floor(np.arange(num_segments + 1) * num_frames / num_segments).astype(np.int64)
  lengths = starts[1:] - starts[:-1]
  if rng is None:
    offset = lengths // 2
  else:
    offset = np.floor(rng.random(num_segments) * lengths).astype(np.int64)
  idx = (starts[:-1] + offset).astype(np.int32)
  return idx, np.ones(num_segments, np.float32)
