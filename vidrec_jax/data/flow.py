"""Dense optical flow in pure JAX: coarse-to-fine Lucas–Kanade with warping.

`dense_flow` is traceable (jit, vmap, grad) for use inside a model's train step; `estimate_flow`
is the host-side entry point on uint8 frames, jit-compiled once per shape.

Method, per image pair (batched over N): BT.601 grayscale, a light Gaussian presmoothing, a
Gaussian pyramid (5-tap binomial blur, decimation by 2), then from the coarsest level to the
finest: the flow of the level above, upsampled and doubled, refined by `iterations` Gauss–Newton
steps of Lucas–Kanade. Each step warps the second image by the current flow (bilinear gather),
linearises brightness constancy at every pixel's own flow with the average of both images'
gradients (5-point derivatives), and solves a Tikhonov-damped 2x2 system per window. Two choices
matter for accuracy:
  * the step solves for the flow relative to a smooth reference (a wide blur of the current flow)
    instead of for a constant flow per window: the affine part of the motion (rotation, zoom)
    is then not averaged away by the window, while per-pixel noise of the current flow is;
  * pixels whose warped position falls outside the image carry no weight.
And two for speed on CPU: the Gaussian window sums are formed and solved on the half-resolution
grid (the window is wide, sigma 4 px, so little is lost) and the increment is interpolated back;
and pairs go through in chunks (lax.map) small enough for the CPU's caches.

Convention (OpenCV's calcOpticalFlowFarneback(prev=a, next=b)): flow[..., 0] = dx (right),
flow[..., 1] = dy (down), with b[y + dy, x + dx] ≈ a[y, x]. The blurs and the pyramid are in
data/pyramid.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.data import pyramid as filters

# ITU-R BT.601 luma weights, OpenCV's cvtColor(RGB2GRAY): the references see the same gray.
_LUMA = (0.299, 0.587, 0.114)
_PRESMOOTH = 1.2  # sigma (px): bilinear warping and finite differences are accurate on it
_REFERENCE = 10.0  # sigma (px at every level) of the smooth reference flow
_DAMPING = 1.0  # Tikhonov term of the 2x2 systems, in squared gray levels per pixel
_MIN_COARSE = 12  # the coarsest level keeps at least this many pixels on its short side
_CHUNK_PIXELS = 1 << 17  # pairs per lax.map step: about this many pixels (cache-sized)


def _warp(img: jax.Array, flow: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Bilinear img(x + u, y + v) of img (N, H, W) and flow (N, 2, H, W), border replicated,
  and whether each sample fell inside the image."""
  n, h, w = img.shape
  if h < 2 or w < 2:  # the 2 x 2 patches below need two rows and columns
    img = jnp.pad(img, ((0, 0), (0, max(0, 2 - h)), (0, max(0, 2 - w))), mode="edge")
  ys = jnp.arange(h, dtype=jnp.float32)[:, None]
  xs = jnp.arange(w, dtype=jnp.float32)[None, :]
  x = xs + flow[:, 0]
  y = ys + flow[:, 1]
  inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
  x = jnp.clip(x, 0.0, w - 1.0)
  y = jnp.clip(y, 0.0, h - 1.0)
  # x0 <= w - 2 keeps the right neighbour in range; its weight then reaches 1 at the border.
  x0 = jax.lax.stop_gradient(jnp.clip(jnp.floor(x), 0, max(w - 2, 0)))
  y0 = jax.lax.stop_gradient(jnp.clip(jnp.floor(y), 0, max(h - 2, 0)))
  fx, fy = x - x0, y - y0
  # One gather of 2 x 2 patches: a third faster on CPU than four gathers of single pixels.
  batch = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None, None], (n, h, w))
  idx = jnp.stack([batch, y0.astype(jnp.int32), x0.astype(jnp.int32)], axis=-1)
  dims = jax.lax.GatherDimensionNumbers(offset_dims=(3, 4), collapsed_slice_dims=(0,),
                                        start_index_map=(0, 1, 2))
  p = jax.lax.gather(img, idx, dims, (1, 2, 2),
                     mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)
  top = p[..., 0, 0] + fx * (p[..., 0, 1] - p[..., 0, 0])
  bot = p[..., 1, 0] + fx * (p[..., 1, 1] - p[..., 1, 0])
  return top + fy * (bot - top), inside


def _gradients(img: jax.Array) -> tuple[jax.Array, jax.Array]:
  """5-point central differences (1, -8, 0, 8, -1) / 12 over (H, W), borders replicated: half
  the bias of the 3-point stencil on the textures that survive presmoothing."""
  p = jnp.pad(img, [(0, 0)] * (img.ndim - 2) + [(2, 2), (2, 2)], mode="edge")
  c = p[..., 2:-2, :]
  gx = (8 * (c[..., 3:-1] - c[..., 1:-3]) - (c[..., 4:] - c[..., :-4])) / 12
  r = p[..., 2:-2]
  gy = (8 * (r[..., 3:-1, :] - r[..., 1:-3, :]) - (r[..., 4:, :] - r[..., :-4, :])) / 12
  return gx, gy


def _lk_step(a: jax.Array, grad_a: tuple[jax.Array, jax.Array], b: jax.Array, flow: jax.Array,
             window: float) -> jax.Array:
  """One Lucas–Kanade Gauss–Newton step on gray a, b (N, H, W) and flow (N, 2, H, W).

  With G = grad grad^T, I_t = b(x + u) - a and a smooth reference flow `ref`, the new flow at p is
  ref(p) + d(p), where d solves the damped window average (weights w around p, summing to 1)
    (sum_q w G(q) + lam) d = sum_q w [G(q) (u(q) - ref(q)) - grad I_t(q) + lam (u(q) - ref(q))]:
  brightness constancy linearised at each q's own flow u(q), with the flow inside the window
  modelled as the reference plus a constant. Textureless windows keep the current flow."""
  bw, inside = _warp(b, flow)
  gbx, gby = _gradients(bw)
  m = inside.astype(jnp.float32)
  ix = 0.5 * (grad_a[0] + gbx) * m
  iy = 0.5 * (grad_a[1] + gby) * m
  it = bw - a
  ref = filters.wide_blur(flow, _REFERENCE)
  du = flow[:, 0] - ref[:, 0]
  dv = flow[:, 1] - ref[:, 1]
  ixx, ixy, iyy = ix * ix, ix * iy, iy * iy
  terms = jnp.stack([ixx, ixy, iyy, ixx * du + ixy * dv - ix * it, ixy * du + iyy * dv - iy * it,
                     du, dv])
  # The window sums on the half-resolution grid: the binomial step already blurs by sigma 1 (fine
  # px), a Gaussian of the remaining variance there makes up the window.
  h, w = a.shape[-2:]
  taps = filters.gauss_taps(math.sqrt(max(window ** 2 - 1, 0.25)) / 2)
  s = filters.blur(filters.downsample(terms), taps)
  sxx, sxy, syy = s[0] + _DAMPING, s[1], s[2] + _DAMPING
  rx, ry = s[3] + _DAMPING * s[5], s[4] + _DAMPING * s[6]
  det = sxx * syy - sxy * sxy
  d = jnp.stack([(syy * rx - sxy * ry) / det, (sxx * ry - sxy * rx) / det], axis=1)
  return ref + filters.upsample(d, h, w)


def _gray(rgb: jax.Array) -> jax.Array:
  """Presmoothed BT.601 luma (N, H, W) of (N, H, W, 3) frames, in float32."""
  rgb = jnp.asarray(rgb, jnp.float32)
  # A weighted sum, not a matmul with the weights: XLA fuses it with the blur.
  gray = _LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]
  return filters.blur(gray, filters.gauss_taps(_PRESMOOTH))


def auto_levels(h: int, w: int) -> int:
  """Pyramid levels for an (h, w) image: halve while the short side stays >= 12 px."""
  return 1 + max(0, int(math.floor(math.log2(max(1, min(h, w)) / _MIN_COARSE))))


def _flow_gray(a: jax.Array, b: jax.Array, levels: int, iterations: int,
               window: float) -> jax.Array:
  """Coarse-to-fine flow (N, 2, H, W) of presmoothed gray images a, b (N, H, W)."""
  pyramid = [(a, b)]
  for _ in range(levels - 1):
    pyramid.append((filters.downsample(pyramid[-1][0]), filters.downsample(pyramid[-1][1])))
  flow = None
  for la, lb in reversed(pyramid):
    h, w = la.shape[-2:]
    if flow is None:
      flow = jnp.zeros((la.shape[0], 2, h, w), jnp.float32)
    else:
      flow = 2.0 * filters.upsample(flow, h, w)
    grad_a = _gradients(la)
    for _ in range(iterations):  # unrolled: the count is small and XLA fuses across steps
      flow = _lk_step(la, grad_a, lb, flow, window)
  return flow


def dense_flow(a: jax.Array, b: jax.Array, *, levels: int | None = None, iterations: int = 1,
               window: float = 4.0, chunk: int | None = None) -> jax.Array:
  """Dense optical flow from frames a to frames b, pure jnp (works under jit, vmap and grad).

  Args:
    a: (N, H, W, 3) float frames on the 0..255 scale (any float dtype; computed in float32).
    b: like a, the next frames.
    levels: pyramid levels; None halves while the short side stays >= 12 px (`auto_levels`).
    iterations: Lucas–Kanade steps per level.
    window: sigma (pixels) of the Gaussian window of the structure tensor.
    chunk: pairs computed together (a lax.map over chunks keeps the working set in the CPU's
      cache); None picks about 128k pixels per chunk.

  Returns:
    (N, H, W, 2) float32 flow in pixels, [..., 0] = dx, [..., 1] = dy, b[y+dy, x+dx] ≈ a[y, x].
  """
  if a.ndim != 4 or a.shape != b.shape or a.shape[-1] != 3:
    raise ValueError(f"dense_flow: shapes {a.shape} and {b.shape}; allowed: two (N, H, W, 3) "
                     "arrays of one shape")
  n, h, w, _ = a.shape
  levels = auto_levels(h, w) if levels is None else levels
  if levels < 1 or iterations < 1 or window <= 0:
    raise ValueError(f"dense_flow: levels={levels}, iterations={iterations}, window={window}; "
                     "allowed: levels >= 1, iterations >= 1, window > 0")
  ga = _gray(a)
  gb = _gray(b)
  if chunk is None:
    chunk = 1 << max(0, int(math.log2(max(1, _CHUNK_PIXELS // (h * w)))))
  chunk = max(1, min(chunk, n))
  if chunk == n:
    flow = _flow_gray(ga, gb, levels, iterations, window)
  else:
    steps = -(-n // chunk)
    pad = [(0, steps * chunk - n), (0, 0), (0, 0)]  # the padding pairs are dropped below
    ga = jnp.pad(ga, pad).reshape(steps, chunk, h, w)
    gb = jnp.pad(gb, pad).reshape(steps, chunk, h, w)
    flow = jax.lax.map(lambda ab: _flow_gray(ab[0], ab[1], levels, iterations, window), (ga, gb))
    flow = flow.reshape(steps * chunk, 2, h, w)[:n]
  return jnp.moveaxis(flow, 1, -1)


_TRACES = [0]  # incremented at each trace of the jitted entry point (tests check the cache)


@jax.jit
def _estimate(a: jax.Array, b: jax.Array) -> jax.Array:
  _TRACES[0] += 1
  return dense_flow(a.astype(jnp.float32), b.astype(jnp.float32))


def estimate_flow(frames_a, frames_b) -> jax.Array:
  """Dense flow between uint8 RGB frame pairs; jit-compiled once per shape.

  Args:
    frames_a: (N, H, W, 3) uint8 numpy or jax array.
    frames_b: like frames_a, the next frames.

  Returns:
    (N, H, W, 2) float32 flow in pixels: dx, dy with frames_b[y+dy, x+dx] ≈ frames_a[y, x].

  Raises:
    ValueError: a wrong rank or channel count, a dtype other than uint8, or different shapes.
  """
  for name, x in (("frames_a", frames_a), ("frames_b", frames_b)):
    shape, dtype = tuple(np.shape(x)), getattr(x, "dtype", None)
    if len(shape) != 4 or shape[-1] != 3 or 0 in shape:
      raise ValueError(f"estimate_flow: {name} has shape {shape}; allowed: (N, H, W, 3) RGB "
                       "frames, N, H, W >= 1")
    if dtype != np.uint8:
      raise ValueError(f"estimate_flow: {name} has dtype {dtype}; allowed: uint8")
  if np.shape(frames_a) != np.shape(frames_b):
    raise ValueError(f"estimate_flow: frames_a {tuple(np.shape(frames_a))} and frames_b "
                     f"{tuple(np.shape(frames_b))} differ in shape; allowed: one shape")
  # Device arrays either way: a numpy and a jax argument of one shape would be two cache entries.
  return _estimate(jnp.asarray(frames_a), jnp.asarray(frames_b))
