"""Separable image filters for the optical-flow estimator (data/flow.py), in pure JAX: Gaussian
and binomial blurs with edge replication, decimation by 2 and its bilinear inverse (a Gaussian
pyramid), and a wide blur formed on coarser grids. Arrays are (N, H, W, ...)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

BINOMIAL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)  # pyramid filter, sigma 1


def gauss_taps(sigma: float) -> tuple[float, ...]:
  """Normalised 1-D Gaussian taps of radius ceil(2 sigma)."""
  r = max(1, int(math.ceil(2 * sigma)))
  w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
  return tuple(float(v) for v in w / w.sum())


def filter_axis(x: jax.Array, taps: tuple[float, ...], axis: int) -> jax.Array:
  """Correlates x with symmetric `taps` along `axis`, replicating the border.

  Shifted slices summed with scalar weights fuse into one XLA loop, much faster on CPU than a
  convolution op for these single-channel kernels."""
  r = len(taps) // 2
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (r, r)
  xp = jnp.pad(x, pad, mode="edge")
  out = taps[r] * jax.lax.slice_in_dim(xp, r, r + n, axis=axis)
  for k in range(1, r + 1):
    out = out + taps[r + k] * (jax.lax.slice_in_dim(xp, r + k, r + k + n, axis=axis) +
                               jax.lax.slice_in_dim(xp, r - k, r - k + n, axis=axis))
  return out


def blur(x: jax.Array, taps: tuple[float, ...]) -> jax.Array:
  """Separable blur over the last two axes (H, W), border replicated."""
  return filter_axis(filter_axis(x, taps, x.ndim - 2), taps, x.ndim - 1)


def downsample_axis(x: jax.Array, axis: int) -> jax.Array:
  """Binomial blur along `axis` evaluated at the even samples only (border replicated)."""
  n = x.shape[axis]
  m = (n + 1) // 2
  pad = [(0, 0)] * x.ndim
  pad[axis] = (2, 2)
  xp = jnp.pad(x, pad, mode="edge")
  # Strided slices: blurring everything and decimating afterwards fuses into a loop that XLA
  # CPU runs ~10x slower on 4-D arrays.
  out = BINOMIAL[0] * jax.lax.slice_in_dim(xp, 0, 2 * m - 1, stride=2, axis=axis)
  for j in range(1, 5):
    out = out + BINOMIAL[j] * jax.lax.slice_in_dim(xp, j, j + 2 * m - 1, stride=2, axis=axis)
  return out


def downsample(x: jax.Array) -> jax.Array:
  """One pyramid step: binomial blur, keep even rows and columns (coarse k <-> fine 2k)."""
  return downsample_axis(downsample_axis(x, x.ndim - 2), x.ndim - 1)


def upsample_axis(x: jax.Array, n: int, axis: int) -> jax.Array:
  """Linear interpolation to `n` samples along `axis`, fine i <-> coarse i / 2 (the inverse
  of `_downsample`'s sampling); the last sample is replicated past the end."""
  m = x.shape[axis]
  nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, m, axis=axis),
                         jax.lax.slice_in_dim(x, m - 1, m, axis=axis)], axis=axis)
  both = jnp.stack([x, 0.5 * (x + nxt)], axis=axis + 1)
  shape = list(x.shape)
  shape[axis] = 2 * m
  return jax.lax.slice_in_dim(both.reshape(shape), 0, n, axis=axis)


def upsample(x: jax.Array, h: int, w: int) -> jax.Array:
  """x (..., h', w') linearly interpolated to (..., h, w), the inverse of `_downsample`."""
  return upsample_axis(upsample_axis(x, h, x.ndim - 2), w, x.ndim - 1)


def wide_blur(x: jax.Array, sigma: float, coarse_sigma: float = 2.0) -> jax.Array:
  """An approximate Gaussian blur of a smooth field with a large sigma: down the pyramid while
  sigma stays over 2 coarse pixels, a short blur there, and back up; a few percent of the
  full-size blur's cost, and exact for linear fields away from the border."""
  shapes = []
  var = sigma ** 2
  while var > coarse_sigma ** 2 * 4 and min(x.shape[-2:]) > 4:
    shapes.append(x.shape[-2:])
    x = downsample(x)
    var = (var - 1) / 4  # the binomial filter has variance 1 at the finer scale
  if var > 0.25:
    x = blur(x, gauss_taps(math.sqrt(var)))
  for h, w in reversed(shapes):
    x = upsample(x, h, w)
  return x
