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
      # asm=0: x264's assembly paths gave different bytes (and pixels) for the same frames in
      # about one process in three on this project's CPU machines (2026-12-03), one thread or
      # many; its C paths did not in 180 tries. Generated worlds must be identical, and the
      # clips are tiny, so the C encoder's speed is no cost that matters here.
      stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "asm=0"}
    else:
      stream.bit_rate = 800_000
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


# Which frames a decoder keeps when a video has more than `max_frames` (data.frame_selection):
# 'spaced' evenly spaced over the whole video (first and last included); 'middle' consecutive
# frames centred on the video's middle, as MicroLens' recipe decodes 5 frames around the middle.
SELECTIONS = ("spaced", "middle")


def spaced_indices(num_frames: int, max_frames: int | None) -> np.ndarray:
  """All frame indices, or `max_frames` evenly spaced ones (first and last included)."""
  if max_frames is None or num_frames <= max_frames:
    return np.arange(num_frames)
  return np.unique(np.round(np.linspace(0, num_frames - 1, max_frames)).astype(np.int64))


def frame_indices(num_frames: int, max_frames: int | None, selection: str = "spaced"
                  ) -> np.ndarray:
  """The indices `selection` keeps of a video's `num_frames`: all of them when they are at
  most `max_frames`."""
  if selection not in SELECTIONS:
    raise ValueError(f"frame selection {selection!r}: allowed {', '.join(SELECTIONS)}")
  if selection == "spaced" or max_frames is None or num_frames <= max_frames:
    return spaced_indices(num_frames, max_frames)
  start = (num_frames - max_frames) // 2
  return np.arange(start, start + max_frames)


def _frame_count(path: str) -> int:
  """Frames in the first video stream: the container's count, else its packets (demuxing
  only, no decoding: cheap even for a long film)."""
  with av.open(path) as container:
    stream = container.streams.video[0]
    if stream.frames > 0:
      return int(stream.frames)
    return sum(1 for p in container.demux(stream) if p.size > 0)


def _square(frame: "av.VideoFrame", size: int) -> np.ndarray:
  """Short side resized to `size` (aspect ratio kept), then the centre size x size crop."""
  w, h = frame.width, frame.height
  if w <= h:
    nw, nh = size, max(size, round(h * size / w))
  else:
    nw, nh = max(size, round(w * size / h)), size
  if (nw, nh) != (w, h):
    frame = frame.reformat(width=nw, height=nh)
  img = frame.to_ndarray(format="rgb24")
  top, left = (nh - size) // 2, (nw - size) // 2
  return img[top:top + size, left:left + size]


def read_frames(path: str, size: int | None = None, max_frames: int | None = None,
                selection: str = "spaced") -> tuple[np.ndarray, np.ndarray]:
  """Decodes a video as a stream, keeping at most `max_frames` frames: evenly spaced, or
  consecutive around the middle (`selection`: `frame_indices`).

  Memory is bounded by the frames kept, whatever the length of the file (a two-hour film with
  max_frames=64 holds 64 frames). With `size`, each kept frame is resized so that its short side
  is `size` and centre-cropped to size x size (the aspect ratio is kept, as ImageNet backbones
  expect), not squashed.

  Returns:
    (uint8 RGB frames (T, size, size, 3) (native size if None), int64 (T,) frame indices).

  Raises:
    VideoDecodeError: naming the path, when the file is missing, empty, truncated before its
      first frame, or not a video.
  """
  try:
    if os.path.getsize(path) == 0:
      raise VideoDecodeError(f"{path}: zero-byte file")
    with av.open(path) as container:
      if not container.streams.video:
        raise VideoDecodeError(f"{path}: no video stream")
    keep = (set(frame_indices(_frame_count(path), max_frames, selection).tolist())
            if max_frames else None)
    last = max(keep) if keep else None
    frames, index = [], []
    with av.open(path) as container:
      stream = container.streams.video[0]
      stream.thread_type = "SLICE"
      for i, frame in enumerate(container.decode(stream)):
        if keep is not None and i not in keep:
          continue  # decoded (later frames depend on it), never converted nor kept
        frames.append(_square(frame, size) if size is not None
                      else frame.to_ndarray(format="rgb24"))
        index.append(i)
        if last is not None and i >= last:
          break
  except VideoDecodeError:
    raise
  except (OSError, av.error.FFmpegError, ValueError, IndexError) as e:
    raise VideoDecodeError(f"{path}: {type(e).__name__}: {e}") from e
  if not frames:
    raise VideoDecodeError(f"{path}: no decodable frame")
  return np.stack(frames), np.asarray(index, np.int64)


def middle_frame(path: str, size: int) -> np.ndarray:
  """The video's middle frame (an image's only one), size x size as `read_frames` crops it;
  decodes up to the middle only.

  Raises:
    VideoDecodeError: naming the path, as `read_frames`.
  """
  try:
    if os.path.getsize(path) == 0:
      raise VideoDecodeError(f"{path}: zero-byte file")
    middle = _frame_count(path) // 2
    last = None
    with av.open(path) as container:
      for i, frame in enumerate(container.decode(container.streams.video[0])):
        last = frame
        if i >= middle:
          break
    if last is not None:  # the middle, or the last frame a truncated file still gives
      return _square(last, size)
  except VideoDecodeError:
    raise
  except (OSError, av.error.FFmpegError, ValueError, IndexError) as e:
    raise VideoDecodeError(f"{path}: {type(e).__name__}: {e}") from e
  raise VideoDecodeError(f"{path}: no decodable frame")


def decode_video(path: str, size: int | None = None, max_frames: int | None = None,
                 selection: str = "spaced") -> np.ndarray:
  """The frames of `read_frames` (every frame when max_frames is None)."""
  return read_frames(path, size, max_frames, selection)[0]


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
