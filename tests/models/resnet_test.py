"""ResNet port: parity with torchvision (when importable) and with a small hand-written PyTorch
reference in torchvision's state-dict layout, block bookkeeping, and strict conversion errors."""

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from flax import nnx
from jax.sharding import PartitionSpec

from tests.torch_refs import torch_module as _torch
from tests.torch_refs import torchvision_module as _torchvision
from vidrec_jax.models import backbones
from vidrec_jax.checkpoints import convert
from vidrec_jax.models.backbones import resnet

# Odd, non-square images exercise the explicit padding of the strided convs and the max pool.
IMAGE_HW = (61, 75)
TOL = 1e-4


# Written out here, independent of the module under test: (bottleneck?, blocks per layer).
REFERENCE_LAYOUT = {"resnet18": (False, (2, 2, 2, 2)), "resnet34": (False, (3, 4, 6, 3)),
                    "resnet50": (True, (3, 4, 6, 3))}


def reference_model(name: str):
  """A plain PyTorch ResNet whose state-dict keys are exactly torchvision's."""
  torch = _torch()
  nn = torch.nn
  bottleneck, counts = REFERENCE_LAYOUT[name]
  expansion = 4 if bottleneck else 1

  def bn(n):
    return nn.BatchNorm2d(n, eps=1e-5)

  def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)

  class Block(nn.Module):

    def __init__(self, cin, width, stride):
      super().__init__()
      cout = width * expansion
      if bottleneck:  # torchvision v1.5: the stride sits on the 3x3 conv
        self.conv1, self.bn1 = conv(cin, width, 1), bn(width)
        self.conv2, self.bn2 = conv(width, width, 3, stride), bn(width)
        self.conv3, self.bn3 = conv(width, cout, 1), bn(cout)
      else:
        self.conv1, self.bn1 = conv(cin, width, 3, stride), bn(width)
        self.conv2, self.bn2 = conv(width, cout, 3), bn(cout)
      self.downsample = None
      if stride != 1 or cin != cout:
        self.downsample = nn.Sequential(conv(cin, cout, 1, stride), bn(cout))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      if bottleneck:
        y = self.bn3(self.conv3(torch.relu(y)))
      return torch.relu(y + (x if self.downsample is None else self.downsample(x)))

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1, self.bn1 = conv(3, 64, 7, 2), bn(64)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      cin = 64
      for layer, (n, width) in enumerate(zip(counts, (64, 128, 256, 512)), start=1):
        blocks = []
        for i in range(n):
          blocks.append(Block(cin, width, 2 if layer > 1 and i == 0 else 1))
          cin = width * expansion
        setattr(self, f"layer{layer}", nn.Sequential(*blocks))
      self.fc = nn.Linear(cin, 1000)

    def forward(self, x):
      out = {}
      x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
      for layer in range(1, 5):
        x = getattr(self, f"layer{layer}")(x)
        out[f"layer{layer}"] = x
      out["logits"] = self.fc(x.mean(dim=(2, 3)))
      return out

  return Net()


def randomise(torch, model, images: np.ndarray, seed: int):
  """Kaiming conv weights, random BN affine, and BN running statistics near (but not equal to)
  the true activation statistics, so every BN tensor matters. The last BN of each residual branch
  gets a small scale so activations do not grow with depth: float32 rounding noise (of torch as
  much as ours) scales with the activations, and the parity tolerance is absolute."""
  g = torch.Generator().manual_seed(seed)
  nn = torch.nn
  last_bns = set()
  for name, m in model.named_modules():
    if name.startswith("layer") and name.count(".") == 1:  # a residual block
      last_bns.add(id(m.bn3 if getattr(m, "bn3", None) is not None else m.bn2))
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        fan_out = m.weight.shape[0] * m.weight.shape[2] * m.weight.shape[3]
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
      elif isinstance(m, nn.BatchNorm2d):
        low, high = (0.1, 0.4) if id(m) in last_bns else (0.5, 1.5)
        m.weight.copy_(low + (high - low) * torch.rand(m.weight.shape, generator=g))
        m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        m.momentum = 1.0  # the calibration pass below sets running stats to batch stats
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight.shape[1] ** 0.5)
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    model.train()
    model(to_torch(torch, images))
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        std = m.running_var.sqrt()
        m.running_mean.add_(0.2 * std * torch.randn(std.shape, generator=g))
        m.running_var.mul_(0.7 + 0.6 * torch.rand(std.shape, generator=g))
  return model.eval()


def to_torch(torch, images: np.ndarray):
  """uint8 NHWC -> ImageNet-normalised float NCHW, the same normalisation the registry names."""
  mean, std = np.asarray(resnet.MEAN, np.float32), np.asarray(resnet.STD, np.float32)
  return torch.from_numpy(((images.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2))


def ours_from(torch, name: str, model, images: np.ndarray, outputs):
  """Saves the state dict, loads it through the registry, returns our outputs as numpy."""
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, f"{name}.pth")
    torch.save(model.state_dict(), path)
    net = backbones.load(name, checkpoint=path)
  x = to_torch(torch, images).numpy().transpose(0, 2, 3, 1)
  graphdef, state = nnx.split(net)
  fwd = nnx.jit(lambda s, x: nnx.merge(graphdef, s)(x, outputs=outputs))
  return {k: np.asarray(v) for k, v in fwd(state, x).items()}


def images_for(seed: int, n: int = 2, hw=IMAGE_HW) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n,) + tuple(hw) + (3,), dtype=np.uint8)


class HandWrittenReferenceParityTest(parameterized.TestCase):

  @parameterized.parameters("resnet18", "resnet50")
  def test_logits_and_layer2_match(self, name):
    torch = _torch()
    images = images_for(0)
    ref = randomise(torch, reference_model(name), images, seed=1)
    ours = ours_from(torch, name, ref, images, ("layer2", "logits"))
    with torch.no_grad():
      theirs = {k: v.numpy() for k, v in ref(to_torch(torch, images)).items()}
    layer2 = theirs["layer2"].transpose(0, 2, 3, 1)
    self.assertEqual(ours["layer2"].shape, layer2.shape)
    self.assertEqual(ours["logits"].shape, (len(images), 1000))
    # Non-trivial magnitudes, so the tolerance means something.
    self.assertGreater(float(np.abs(theirs["logits"]).max()), 1.0)
    self.assertLessEqual(float(np.abs(ours["layer2"] - layer2).max()), TOL)
    self.assertLessEqual(float(np.abs(ours["logits"] - theirs["logits"]).max()), TOL)


class TorchvisionParityTest(parameterized.TestCase):

  @parameterized.parameters("resnet18", "resnet50")
  def test_logits_match_torchvision(self, name):
    torch = _torch()
    try:
      torchvision = _torchvision()
    except Exception as e:  # pylint: disable=broad-except  # ImportError or a broken build
      self.skipTest(f"torchvision is not importable: {type(e).__name__}: {e}")
    images = images_for(2)
    ref = randomise(torch, getattr(torchvision.models, name)(weights=None), images, seed=3)
    ours = ours_from(torch, name, ref, images, ("logits",))["logits"]
    with torch.no_grad():
      theirs = ref(to_torch(torch, images)).numpy()
    self.assertGreater(float(np.abs(theirs).max()), 1.0)
    self.assertLessEqual(float(np.abs(ours - theirs).max()), TOL)


class StructureTest(parameterized.TestCase):

  @parameterized.parameters(("resnet18", 8, 64), ("resnet34", 16, 64), ("resnet50", 16, 256))
  def test_blocks_channels_and_names(self, name, n_blocks, layer1):
    net = backbones.abstract(name)
    self.assertLen(net.blocks, n_blocks)
    self.assertEqual(net.resolution, 224)
    ch = net.stage_channels()
    self.assertEqual(ch, {"stem": 64, "layer1": layer1, "layer2": 2 * layer1,
                          "layer3": 4 * layer1, "layer4": 8 * layer1})
    counts = resnet.VARIANTS[name][1]
    self.assertEqual(net.num_blocks_for("stem"), 0)
    self.assertEqual(net.num_blocks_for("layer2"), sum(counts[:2]))
    self.assertEqual(net.num_blocks_for("layer4"), n_blocks)
    self.assertEqual(net.num_blocks_for("logits"), n_blocks)
    self.assertEqual(net.outputs_allowed(), ("stem", "layer1", "layer2", "layer3", "layer4"))
    state = nnx.state(net, nnx.Param)
    paths = set(convert.flat_params(state))
    self.assertIn(f"blocks/{n_blocks - 1}/conv2/kernel", paths)
    self.assertIn(f"blocks/{sum(counts[:1])}/downsample_conv/kernel", paths)
    self.assertEqual(state["stem_conv"]["kernel"].get_value().shape, (7, 7, 3, 64))
    self.assertEqual(nnx.get_partition_spec(state)["stem_conv"]["kernel"].get_value(),
                     PartitionSpec(None, None, "conv_in", "conv_out"))

  @parameterized.parameters("resnet18", "resnet50")
  def test_output_shapes_and_early_stop(self, name):
    graphdef, state = nnx.split(backbones.abstract(name))
    x = jax.ShapeDtypeStruct((2, 61, 75, 3), jnp.float32)

    def shapes(outputs):
      out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x, outputs=outputs), state, x)
      return {k: v.shape for k, v in out.items()}

    c = backbones.abstract(name).stage_channels()
    self.assertEqual(shapes(resnet.OUTPUTS), {
        "stem": (2, 16, 19, 64), "layer1": (2, 16, 19, c["layer1"]),
        "layer2": (2, 8, 10, c["layer2"]), "layer3": (2, 4, 5, c["layer3"]),
        "layer4": (2, 2, 3, c["layer4"]), "pooled": (2, c["layer4"]), "logits": (2, 1000)})
    # Only the blocks up to the deepest requested output are traced.
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x, outputs=("stem", "layer1")))
    n_convs = str(jaxpr(state, x)).count("conv_general_dilated")
    per_block = 1 if name == "resnet50" else 2  # Bottleneck 1x1 convs are matmuls
    self.assertEqual(n_convs, 1 + per_block * resnet.VARIANTS[name][1][0])
    with self.assertRaisesRegex(ValueError, "unknown ResNet outputs"):
      shapes(("stage1",))


class StrictConversionTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tensors = {k: v.numpy() for k, v in reference_model("resnet34").state_dict().items()}

  def _convert(self, tensors, name="resnet34"):
    state = nnx.state(backbones.abstract(name), nnx.Param)
    spec = backbones.BACKBONES.get(name)
    return convert.convert(tensors, convert.targets_of(state), spec.rules(), spec.ignore)

  def test_every_tensor_is_used_and_every_parameter_filled(self):
    out = self._convert(self.tensors)
    used = {k for k in self.tensors if not k.endswith("num_batches_tracked")}
    self.assertLen(out, len(used))
    # Flat block 3 is layer2.0 in ResNet-34 (three blocks in layer1).
    w = self.tensors["layer2.0.downsample.0.weight"]
    np.testing.assert_array_equal(out["blocks/3/downsample_conv/kernel"], w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(out["blocks/3/downsample_bn/mean"],
                                  self.tensors["layer2.0.downsample.1.running_mean"])
    np.testing.assert_array_equal(out["classifier/kernel"], self.tensors["fc.weight"].T)

  def test_missing_tensor_is_named(self):
    # Through the file reader and the registry, as a user's checkpoint would go.
    torch = _torch()
    t = {k: torch.from_numpy(v) for k, v in self.tensors.items()}
    del t["layer3.2.bn1.running_var"]
    with tempfile.TemporaryDirectory() as d:
      path = os.path.join(d, "resnet34.pth")
      torch.save(t, path)
      with self.assertRaisesRegex(convert.ConversionError,
                                  r"missing in the checkpoint: blocks/9/bn1/var <- "
                                  r"layer3\.2\.bn1\.running_var"):
        backbones.load("resnet34", checkpoint=path)

  def test_unexpected_tensor_is_named(self):
    t = dict(self.tensors)
    t["layer4.3.conv1.weight"] = np.zeros((512, 512, 3, 3), np.float32)
    with self.assertRaisesRegex(convert.ConversionError,
                                r"unexpected checkpoint tensors: layer4\.3\.conv1\.weight"):
      self._convert(t)

  def test_wrong_shape_is_named(self):
    t = dict(self.tensors)
    t["fc.bias"] = np.zeros(999, np.float32)
    with self.assertRaisesRegex(convert.ConversionError,
                                r"classifier/bias \(1000,\) <- fc\.bias \(999,\)"):
      self._convert(t)

  def test_wrong_variant_fails(self):
    with self.assertRaisesRegex(convert.ConversionError, "unexpected checkpoint tensors"):
      self._convert(self.tensors, name="resnet18")

  def test_no_default_weights(self):
    with self.assertRaisesRegex(FileNotFoundError, "pass a checkpoint path"):
      backbones.load("resnet50")


if __name__ == "__main__":
  absltest.main()
