"""Dense optical flow (vidrec_jax.data.flow): known sub-pixel shifts of a blurred-noise texture
and of a real frame, parity with OpenCV's Farneback, tracing (jit, vmap, grad, bfloat16), the
compile cache, and strict input errors."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from scipy import ndimage

from tests import helpers
from vidrec_jax.data import video_io
from vidrec_jax.data import flow

SHIFT = (1.7, -1.1)  # (dx, dy) in pixels, OpenCV's own Farneback test's order of magnitude


def _fourier_shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
  """img(x - dx, y - dy) of a periodic image, exact for any sub-pixel shift."""
  h, w = img.shape[:2]
  ky = np.fft.fftfreq(h)[:, None]
  kx = np.fft.fftfreq(w)[None, :]
  phase = np.exp(-2j * np.pi * (kx * dx + ky * dy))
  if img.ndim == 3:
    phase = phase[..., None]
  return np.real(np.fft.ifft2(np.fft.fft2(img, axes=(0, 1)) * phase, axes=(0, 1)))


def _to_rgb8(gray: np.ndarray) -> np.ndarray:
  return np.repeat(np.clip(np.round(gray), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def noise_pair(size: int = 64, margin: int = 16, seed: int = 0):
  """A blurred uniform-noise texture (periodic, so the Fourier shift has no seam) and its copy
  moved by SHIFT, both cropped to size x size: frames_b[y + dy, x + dx] = frames_a[y, x]."""
  rng = np.random.default_rng(seed)
  big = ndimage.gaussian_filter(rng.uniform(0, 255, (size + 2 * margin,) * 2), 1.5, mode="wrap")
  big = (big - big.min()) / (big.max() - big.min()) * 255
  moved = _fourier_shift(big, *SHIFT)
  crop = (slice(margin, margin + size),) * 2
  return _to_rgb8(big[crop])[None], _to_rgb8(moved[crop])[None]


def real_pair(shift=(0.6, -1.4), size: int = 64, margin: int = 8):
  """A 64 x 64 crop of a real frame (the first of carphone_pristine.mp4, 176 x 144: a face in a
  car) and the same crop moved by `shift` (cubic spline), with the true flow."""
  frame = video_io.decode_video(helpers.real_clip_path("carphone_pristine.mp4"), max_frames=2)[0]
  full = size + 2 * margin
  y0, x0 = (frame.shape[0] - full) // 2, (frame.shape[1] - full) // 2
  small = frame[y0:y0 + full, x0:x0 + full].astype(np.float64)
  moved = ndimage.shift(small, (shift[1], shift[0], 0), order=3, mode="mirror")
  crop = (slice(margin, margin + size),) * 2
  a = np.clip(np.round(small[crop]), 0, 255).astype(np.uint8)[None]
  b = np.clip(np.round(moved[crop]), 0, 255).astype(np.uint8)[None]
  truth = np.broadcast_to(np.asarray(shift, np.float32), (1, size, size, 2))
  return a, b, truth


def interior(x: np.ndarray, border: int = 8) -> np.ndarray:
  return x[:, border:-border, border:-border]


class KnownFlowTest(absltest.TestCase):

  def test_blurred_noise_shift_is_recovered_with_opencv_sign_convention(self):
    a, b = noise_pair()
    f = np.asarray(flow.estimate_flow(a, b))
    self.assertEqual(f.shape, (1, 64, 64, 2))
    self.assertEqual(f.dtype, np.float32)
    median = np.median(interior(f).reshape(-1, 2), axis=0)
    np.testing.assert_allclose(median, SHIFT, atol=0.1)
    # Swapping the frames reverses the flow: dx < 0 and dy > 0 then.
    back = np.median(interior(np.asarray(flow.estimate_flow(b, a))).reshape(-1, 2), axis=0)
    np.testing.assert_allclose(back, [-SHIFT[0], -SHIFT[1]], atol=0.1)

  def test_real_frame_translation_has_sub_pixel_error(self):
    a, b, truth = real_pair()
    f = np.asarray(flow.estimate_flow(a, b))
    epe = np.linalg.norm(interior(f - truth), axis=-1)
    self.assertLess(float(np.median(epe)), 0.05)
    self.assertLess(float(epe.mean()), 0.1)

  def test_not_worse_than_opencv_farneback_on_a_known_translation(self):
    if importlib.util.find_spec("cv2") is None:
      self.skipTest("OpenCV (cv2) is not installed: it is the reference; pip install "
                    "opencv-python-headless")
    import cv2  # pylint: disable=g-import-not-at-top
    a, b, truth = real_pair()
    gray = [cv2.cvtColor(x[0], cv2.COLOR_RGB2GRAY) for x in (a, b)]
    fb = cv2.calcOpticalFlowFarneback(gray[0], gray[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)[None]
    ours = np.asarray(flow.estimate_flow(a, b))
    epe_fb = float(np.linalg.norm(interior(fb - truth), axis=-1).mean())
    epe = float(np.linalg.norm(interior(ours - truth), axis=-1).mean())
    self.assertLess(epe, epe_fb + 0.05, f"JAX EPE {epe:.3f} vs Farneback {epe_fb:.3f}")


class TracingTest(absltest.TestCase):
  """On 2 pairs of 16 x 16 frames (one pyramid level: quick to compile)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    rng = np.random.default_rng(1)
    base = ndimage.gaussian_filter(rng.uniform(0, 255, (2, 20, 20, 3)), (0, 1.5, 1.5, 0))
    base = np.round(base)  # integers: exact in uint8 and bfloat16 too
    cls.a = np.asarray(base[:, 2:18, 2:18], np.float32)
    cls.b = np.asarray(base[:, 3:19, 1:17], np.float32)  # moved by dx=+1, dy=-1
    cls.flow = jax.jit(flow.dense_flow)(cls.a, cls.b)

  def test_shape_dtype_and_direction(self):
    self.assertEqual(self.flow.shape, (2, 16, 16, 2))
    self.assertEqual(self.flow.dtype, jnp.float32)
    np.testing.assert_allclose(np.median(np.asarray(self.flow)[:, 4:-4, 4:-4].reshape(-1, 2), 0),
                               [1.0, -1.0], atol=0.2)

  def test_jit_and_vmap_match_the_batched_call(self):
    a2, b2 = self.a.reshape(2, 1, 16, 16, 3), self.b.reshape(2, 1, 16, 16, 3)
    mapped = jax.jit(jax.vmap(flow.dense_flow))(a2, b2)
    np.testing.assert_allclose(np.asarray(mapped).reshape(2, 16, 16, 2), self.flow, atol=1e-4)

  def test_grad_is_finite(self):
    def loss(a):
      return jnp.mean(flow.dense_flow(a, self.b) ** 2)

    g = jax.jit(jax.grad(loss))(jnp.asarray(self.a))
    self.assertEqual(g.shape, self.a.shape)
    self.assertTrue(bool(jnp.all(jnp.isfinite(g))))
    self.assertGreater(float(jnp.abs(g).sum()), 0.0)

  def test_bfloat16_input(self):
    f = jax.jit(flow.dense_flow)(jnp.asarray(self.a, jnp.bfloat16),
                                 jnp.asarray(self.b, jnp.bfloat16))
    self.assertEqual(f.dtype, jnp.float32)
    np.testing.assert_allclose(f, self.flow, atol=1e-4)

  def test_estimate_flow_is_dense_flow_and_compiles_once_per_shape(self):
    a, b = self.a.astype(np.uint8), self.b.astype(np.uint8)
    first = flow.estimate_flow(a, b)
    traces, cached = flow._TRACES[0], flow._estimate._cache_size()
    second = flow.estimate_flow(jnp.asarray(a), b)
    self.assertEqual(flow._TRACES[0], traces)
    self.assertEqual(flow._estimate._cache_size(), cached)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, self.flow, atol=1e-5)


class BadInputTest(absltest.TestCase):

  def assert_one_line_error(self, a, b, *words):
    with self.assertRaises(ValueError) as ctx:
      flow.estimate_flow(a, b)
    msg = str(ctx.exception)
    self.assertNotIn("\n", msg)
    for word in words + ("allowed",):
      self.assertIn(word, msg)

  def test_mismatched_shapes(self):
    self.assert_one_line_error(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 9, 3), np.uint8),
                               "differ in shape")

  def test_non_uint8_dtype(self):
    self.assert_one_line_error(np.zeros((1, 8, 8, 3), np.float32),
                               np.zeros((1, 8, 8, 3), np.float32), "float32", "uint8")

  def test_wrong_rank_or_channels(self):
    self.assert_one_line_error(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8),
                               "(8, 8, 3)", "(N, H, W, 3)")
    self.assert_one_line_error(np.zeros((1, 8, 8, 1), np.uint8), np.zeros((1, 8, 8, 1), np.uint8),
                               "(N, H, W, 3)")


if __name__ == "__main__":
  absltest.main()
