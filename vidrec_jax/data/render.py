"""Renders the pixels of a synthetic video from its latent factors.

Appearance factors (palette, shape, texture) are visible in any single frame; motion factors
(direction, speed, rotation) are visible only across frames; a second palette (worlds with
temporal-order tastes) takes over halfway, so which colour comes first shows only in order.
"""

from __future__ import annotations

import numpy as np

from vidrec_jax.data import world as world_lib


def render(video: world_lib.Video, resolution: int, noise: float, seed: int) -> np.ndarray:
  """Returns the clip as uint8 (num_frames, resolution, resolution, 3)."""
  r = resolution
  scale = r / 64.0
  rng = np.random.default_rng([seed, video.video_id])
  yy, xx = np.mgrid[0:r, 0:r].astype(np.float32)
  # Background: a dim texture whose tint is fixed per texture type, so it carries no taste.
  if video.texture == 0:
    pattern = np.zeros((r, r), np.float32)
  elif video.texture == 1:
    pattern = (np.floor((xx + yy) / (6 * scale)) % 2).astype(np.float32)
  else:
    pattern = ((np.floor(xx / (8 * scale)) + np.floor(yy / (8 * scale))) % 2).astype(np.float32)
  background = (40.0 + 30.0 * pattern)[..., None] * np.array([1.0, 0.9, 1.1], np.float32)
  colors = (world_lib.PALETTE[video.palette],
            world_lib.PALETTE[video.palette2 if video.palette2 >= 0 else video.palette])
  half = 14.0 * scale
  velocity = world_lib.DIRECTIONS[video.direction] * world_lib.SPEEDS[video.speed] * scale
  omega = world_lib.ROTATIONS[video.rotation]
  frames = np.empty((video.num_frames, r, r, 3), np.uint8)
  for t in range(video.num_frames):
    cx, cy = (np.array(video.start_xy)
              + velocity * t) % r
    # Wrapped offsets so the shape re-enters from the opposite edge.
    dx = (xx - cx + r / 2) % r - r / 2
    dy = (yy - cy + r / 2) % r - r / 2
    angle = video.phase + omega * t
    ca, sa = np.cos(angle), np.sin(angle)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    if video.shape == 0:
      inside = u * u + v * v <= half * half
      marker = (u > half * 0.3) & (np.abs(v) < half * 0.25) & inside  # makes rotation visible
    elif video.shape == 1:
      inside = (np.abs(u) <= half * 0.85) & (np.abs(v) <= half * 0.85)
      marker = (u > half * 0.4) & inside
    else:
      inside = (v <= half * 0.6) & (v >= -half * 0.9 + 1.8 * np.abs(u))
      marker = (v > half * 0.2) & inside
    color = colors[int(2 * t >= video.num_frames)]  # the second palette from halfway on
    img = np.where(inside[..., None], color, background)
    img = np.where(marker[..., None], color * 0.55, img)
    if noise > 0:
      img = img + rng.normal(0, noise * 255.0, img.shape)
    frames[t] = np.clip(img, 0, 255).astype(np.uint8)
  return frames
