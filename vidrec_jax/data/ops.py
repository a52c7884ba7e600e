"""Registered per-clip preprocessing ops: each produces one clip input key from a video's frames.

A clip is sampled TSN-style (data/video_io.py `tsn_indices`): `idx` are the sampled frame
indices, `nxt` the frame right after each one, `mask` 1 for real (not padded) segments. A clip op
turns the video's frame array into one input of the model:

  frames         normalised sampled frames                       (from decoded pixels)
  motion         the TSN RGB difference: next frame - this frame  (from decoded pixels)
  frame_pairs    raw pixels of each sampled frame and the next    (from decoded pixels)
  flow           optical flow from each sampled frame to the next (from decoded pixels, by the
                 loader: estimated once per video on the host CPU, kept with its frames)
  features       cached backbone features of the sampled frames   (from the feature cache)
  next_features  cached features of the frame after each one      (from the feature cache)
  cached_flow    the flow cache's flow of each sampled frame to the next, beside cached
                 features (from the feature cache's source, read from the flow cache)

Encoders declare the keys they read (models/encoders.py); the clip sampler runs exactly those
ops. Adding an input (e.g. optical flow) is one registered `ClipOp`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from vidrec_jax.registry import Registry

PIXELS, FEATURES = "pixels", "features"  # where an op's frames come from

# Per-channel mean and std of the pixel values, on the 0..255 scale.
_PIXEL_STATS = {
    "unit": (np.full(3, 127.5, np.float32), np.full(3, 127.5, np.float32)),
    # EfficientNet-Lite's preprocessing: (x - 127) / 128.
    "lite": (np.full(3, 127.0, np.float32), np.full(3, 128.0, np.float32)),
    "imagenet": (np.array([123.675, 116.28, 103.53], np.float32),
                 np.array([58.395, 57.12, 57.375], np.float32)),
}
NORMALIZATIONS = tuple(_PIXEL_STATS)


def normalize(frames: np.ndarray, mode: str) -> np.ndarray:
  """uint8 (..., 3) frames -> float32, centred and scaled by the statistics named `mode`."""
  mean, std = _PIXEL_STATS[mode]
  return (frames.astype(np.float32) - mean) / std


def _masked(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
  return x * mask.reshape((-1,) + (1,) * (x.ndim - 1))


@dataclasses.dataclass(frozen=True)
class ClipOp:
  """One clip input computed from a video's frame array.

  Attributes:
    source: PIXELS (uint8 (T, S, S, 3) decoded frames) or FEATURES ((T, D) cached features).
    fn: (frames, idx, nxt, mask, prep) -> float32 (K, ...) where `prep` maps raw frames to
      model inputs (pixel normalisation; identity for features).
    per_video: optional frames -> array computed once per video and cached with its frames
      (data/clips.py); `fn` then receives that array in place of the frames.
    channels: the last axis of the op's output when it differs from its frames' (frame
      pairs: 6, flow: 2); the zero input of an unreadable video has this shape.
    cache: the workdir cache the op reads when the run has one ('flow': data/flow_cache.py,
      written before training by whoever reads it); None: computed from its source alone.
    fake: (rng, batch, frames, frame_size, feature_dim) -> a random (batch, frames, ...) input
      in the op's shape and value range, for step tests and speed benchmarks
      (train/random_batch.py); None: standard normal values, (..., frame_size, frame_size,
      channels or 3) from pixels, (..., feature_dim) from features.
  """

  source: str
  fn: Callable[..., np.ndarray]
  per_video: Callable[[np.ndarray], np.ndarray] | None = None
  channels: int | None = None
  cache: str | None = None
  fake: Callable[..., np.ndarray] | None = None

  def random(self, rng: np.random.Generator, batch: int, frames: int, frame_size: int,
             feature_dim: int) -> np.ndarray:
    """A random input of this op for a batch of clips (see `fake`)."""
    if self.fake is not None:
      return self.fake(rng, batch, frames, frame_size, feature_dim)
    if self.source == PIXELS:
      return rng.normal(size=(batch, frames, frame_size, frame_size, self.channels or 3))
    return rng.normal(size=(batch, frames, feature_dim))


def _fake_flow(rng, batch, frames, frame_size, feature_dim):
  del feature_dim  # flow fields, in pixels
  return rng.normal(size=(batch, frames, frame_size, frame_size, 2))


CLIP_OPS: Registry[ClipOp] = Registry("clip input")

CLIP_OPS.register("frames", ClipOp(PIXELS, lambda x, idx, nxt, mask, prep: prep(x[idx])))
CLIP_OPS.register("motion", ClipOp(
    PIXELS, lambda x, idx, nxt, mask, prep: _masked(prep(x[nxt]) - prep(x[idx]), mask)))
# Raw (0..255) pixels of each sampled frame and the next, side by side on the channel axis: the
# optical-flow stream estimates flow between them on device (models/video_encoder.py).
CLIP_OPS.register("frame_pairs", ClipOp(
    PIXELS, lambda x, idx, nxt, mask, prep: _masked(
        np.concatenate([x[idx], x[nxt]], axis=-1).astype(np.float32), mask), channels=6,
    fake=lambda rng, b, t, size, dim: rng.integers(0, 256, (b, t, size, size, 6))))


def _bucket(n: int) -> int:
  """n rounded up to a power of two: videos of many lengths share a few compiled shapes."""
  return 1 << max(0, int(n - 1).bit_length())


def video_flow(frames: np.ndarray) -> np.ndarray:
  """Optical flow from each decoded frame to the next, (T, S, S, 2) float32 in pixels (the last
  frame's is zero: it has no next frame), estimated by data/flow.py on the host CPU so that a
  loader worker never touches an accelerator."""
  import jax  # pylint: disable=g-import-not-at-top  (the loader imports jax only when used)

  from vidrec_jax.data import flow  # pylint: disable=g-import-not-at-top

  t = len(frames)
  out = np.zeros(frames.shape[:-1] + (2,), np.float32)
  if t < 2:
    return out
  n = _bucket(t - 1)
  pad = np.zeros((n - (t - 1),) + frames.shape[1:], np.uint8)
  with jax.default_device(jax.local_devices(backend="cpu")[0]):  # this process's own
    field = flow.estimate_flow(np.concatenate([frames[:-1], pad]),
                               np.concatenate([frames[1:], pad]))
  out[:-1] = np.asarray(field)[:t - 1]
  return out


# The flow op reads the per-video field: the flow of sampled frame idx to idx + 1 (= nxt; zero
# where nxt == idx at the video's last frame).
CLIP_OPS.register("flow", ClipOp(
    PIXELS, lambda f, idx, nxt, mask, prep: _masked(f[idx] * (nxt > idx)[:, None, None, None],
                                                    mask), per_video=video_flow,
    channels=2, cache="flow"))


def _not_cached(frames: np.ndarray) -> np.ndarray:
  del frames
  raise ValueError("cached_flow reads the flow cache: there are no pixels beside cached "
                   "features to estimate flow from")


# The same field as `flow`, read from the flow cache next to the backbone's cached features
# (data/clips.py CachedFeatures `stored`); a video the flow cache lacks is reported and skipped.
CLIP_OPS.register("cached_flow", ClipOp(
    FEATURES, CLIP_OPS.get("flow").fn, per_video=_not_cached, cache="flow", fake=_fake_flow))
CLIP_OPS.register("features", ClipOp(
    FEATURES, lambda x, idx, nxt, mask, prep: _masked(x[idx], mask)))
CLIP_OPS.register("next_features", ClipOp(
    FEATURES, lambda x, idx, nxt, mask, prep: _masked(x[nxt], mask)))


def source_of(keys: tuple[str, ...]) -> str | None:
  """The one frame source the clip inputs `keys` need ('mask' needs none); None for no inputs.

  Raises:
    ValueError: the keys mix pixel and feature-cache inputs.
  """
  sources = {CLIP_OPS.get(k).source for k in keys if k != "mask"}
  if len(sources) > 1:
    raise ValueError(f"clip inputs {keys} mix frame sources {sorted(sources)}")
  return sources.pop() if sources else None
