"""Small, registered per-example preprocessing ops used by the Grain pipelines."""

from __future__ import annotations

from typing import Callable

import numpy as np

# Per-channel mean and std of the pixel values, on the 0..255 scale.
_PIXEL_STATS = {
    "unit": (np.full(3, 127.5, np.float32), np.full(3, 127.5, np.float32)),
    # EfficientNet-Lite's preprocessing: (x - 127) / 128.
    "lite": (np.full(3, 127.0, np.float32), np.full(3, 128.0, np.float32)),
    "imagenet": (np.array([123.675, 116.28, 103.53], np.float32),
                 np.array([58.395, 57.12, 57.375], np.float32)),
}


def normalize(frames: np.ndarray, mode: str) -> np.ndarray:
  """uint8 (..., 3) frames -> float32, centred and scaled by the statistics named `mode`."""
  mean, std = _PIXEL_STATS[mode]
  return (frames.astype(np.float32) - mean) / std


OPS: dict[str, Callable[..., np.ndarray]] = {"normalize": normalize}
NORMALIZATIONS = tuple(_PIXEL_STATS)
