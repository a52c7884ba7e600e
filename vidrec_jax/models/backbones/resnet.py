"""ResNet-18/34/50 (He et al.) in Flax NNX, loadable from torchvision-layout state dicts.

Architecture facts (torchvision's "v1.5" ResNet): a 7x7 stride-2 stem conv (padding 3) with batch
norm and ReLU, then a 3x3 stride-2 max pool (padding 1, padded with -inf); four layers of residual
blocks at 64, 128, 256 and 512 base channels, the first block of layers 2-4 downsampling by two.
ResNet-18/34 use BasicBlocks (two 3x3 convs); ResNet-50 uses Bottlenecks (1x1, 3x3, 1x1 with 4x
channel expansion) whose stride sits on the 3x3 conv. A projection shortcut (1x1 conv + batch norm)
is used wherever the block changes shape. Batch-norm epsilon is 1e-5. Inputs are RGB normalised
with the ImageNet mean and std.

The residual blocks of all four layers form one flat list (`blocks/<i>/...`), so "the last N
blocks" means the same as for the other backbones. The forward pass can return intermediate
outputs (`stem`, `layer1` .. `layer4`, `pooled`, `logits`) and stops after the deepest one asked
for.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.models.backbones.common import FrozenBatchNorm
from vidrec_jax.models.backbones.common import StagedBackbone
from vidrec_jax.models.backbones.common import pointwise
from vidrec_jax.checkpoints.convert import Rule
from vidrec_jax.models.partitioning import param

# name -> (bottleneck blocks?, blocks per layer)
VARIANTS = {"resnet18": (False, (2, 2, 2, 2)), "resnet34": (False, (3, 4, 6, 3)),
            "resnet50": (True, (3, 4, 6, 3))}
STEM, NUM_CLASSES, BN_EPS, EXPANSION, RESOLUTION = 64, 1000, 1e-5, 4, 224
WIDTHS = (64, 128, 256, 512)
OUTPUTS = ("stem", "layer1", "layer2", "layer3", "layer4", "pooled", "logits")
# ImageNet statistics (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225) on the 0..255 scale.
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  cin: int
  width: int  # channels of the inner convs
  cout: int
  stride: int
  bottleneck: bool
  layer: int  # 1..4, as in torchvision's `layer{L}`
  index: int  # position inside its layer

  @property
  def downsample(self) -> bool:
    return self.stride != 1 or self.cin != self.cout

  @property
  def torch_prefix(self) -> str:
    return f"layer{self.layer}.{self.index}"

  @property
  def output(self) -> str:
    return f"layer{self.layer}"


def block_specs(name: str) -> list[BlockSpec]:
  bottleneck, counts = VARIANTS[name]
  expansion = EXPANSION if bottleneck else 1
  specs, cin = [], STEM
  for li, (n, width) in enumerate(zip(counts, WIDTHS)):
    for i in range(n):
      stride = 2 if li > 0 and i == 0 else 1
      specs.append(BlockSpec(cin, width, width * expansion, stride, bottleneck, li + 1, i))
      cin = width * expansion
  return specs


def _conv(cin, cout, k, stride=1, *, dtype, param_dtype, rngs):
  """k x k bias-free conv with torch's explicit symmetric padding k // 2."""
  pad = k // 2
  init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
  return nnx.Conv(cin, cout, (k, k), (stride, stride), padding=((pad, pad), (pad, pad)),
                  use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                  kernel_init=param(init, (None, None, "conv_in", "conv_out")))


def _pointwise(conv: nnx.Conv, x: jax.Array, stride: int) -> jax.Array:
  """A 1x1 conv with stride and no padding: subsample, then matmul."""
  if stride != 1:
    x = x[:, ::stride, ::stride, :]
  return pointwise(conv, x)


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """torch.nn.MaxPool2d(3, stride=2, padding=1): the padding never wins (it is -inf)."""
  return jax.lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), jax.lax.max, (1, 3, 3, 1),
                               (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0)))


class ResidualBlock(nnx.Module):
  """BasicBlock (3x3, 3x3) or Bottleneck (1x1, 3x3 with the stride, 1x1), plus the shortcut."""

  def __init__(self, spec: BlockSpec, *, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def bn(n):
      return FrozenBatchNorm(n, param_dtype=param_dtype, eps=BN_EPS)

    self.spec = spec
    if spec.bottleneck:
      self.conv1, self.bn1 = _conv(spec.cin, spec.width, 1, **kw), bn(spec.width)
      self.conv2, self.bn2 = _conv(spec.width, spec.width, 3, spec.stride, **kw), bn(spec.width)
      self.conv3, self.bn3 = _conv(spec.width, spec.cout, 1, **kw), bn(spec.cout)
    else:
      self.conv1, self.bn1 = _conv(spec.cin, spec.width, 3, spec.stride, **kw), bn(spec.width)
      self.conv2, self.bn2 = _conv(spec.width, spec.cout, 3, **kw), bn(spec.cout)
      self.conv3, self.bn3 = None, None
    if spec.downsample:
      self.downsample_conv = _conv(spec.cin, spec.cout, 1, spec.stride, **kw)
      self.downsample_bn = bn(spec.cout)
    else:
      self.downsample_conv, self.downsample_bn = None, None

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.spec.bottleneck:
      y = jax.nn.relu(self.bn1(_pointwise(self.conv1, x, 1)))
      y = jax.nn.relu(self.bn2(self.conv2(y)))
      y = self.bn3(_pointwise(self.conv3, y, 1))
    else:
      y = jax.nn.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
    if self.downsample_conv is not None:
      x = self.downsample_bn(_pointwise(self.downsample_conv, x, self.spec.stride))
    return jax.nn.relu(y + x.astype(y.dtype))


class ResNet(nnx.Module, StagedBackbone):
  """ResNet classifier whose forward can return intermediate outputs."""

  OUTPUTS = OUTPUTS
  STEM_CHANNELS = STEM
  HEAD_CHANNELS = 0

  def __init__(self, name: str = "resnet50", *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    if name not in VARIANTS:
      raise ValueError(f"ResNet variant {name!r} unknown; allowed: {', '.join(VARIANTS)}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.name = name
    self.resolution = RESOLUTION
    self.dtype = dtype
    self.specs = block_specs(name)
    self.stem_conv = _conv(3, STEM, 7, 2, **kw)
    self.stem_bn = FrozenBatchNorm(STEM, param_dtype=param_dtype, eps=BN_EPS)
    self.blocks = nnx.List([ResidualBlock(s, **kw) for s in self.specs])
    self.classifier = nnx.Linear(
        self.specs[-1].cout, NUM_CLASSES, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        kernel_init=param(nnx.initializers.lecun_normal(), ("conv_out", "classes")),
        bias_init=param(nnx.initializers.zeros_init(), ("classes",)))

  def __call__(self, x: jax.Array, outputs=("logits",)) -> dict[str, jax.Array]:
    """x: normalised RGB (N, H, W, 3). Returns the requested outputs by name."""
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
      raise ValueError(f"unknown ResNet outputs {unknown}; allowed: {OUTPUTS}")
    deepest = max(OUTPUTS.index(o) for o in outputs)
    res = {}
    x = jax.nn.relu(self.stem_bn(self.stem_conv(x.astype(self.dtype))))
    x = max_pool_3x3_s2(x)
    res["stem"] = x
    for i, (spec, block) in enumerate(zip(self.specs, self.blocks)):
      if OUTPUTS.index(f"layer{spec.layer}") > deepest:
        break
      x = block(x)
      if i + 1 == len(self.specs) or self.specs[i + 1].layer != spec.layer:
        res[f"layer{spec.layer}"] = x
    if deepest >= OUTPUTS.index("pooled"):
      res["pooled"] = x.astype(jnp.float32).mean(axis=(1, 2))
      if deepest >= OUTPUTS.index("logits"):
        res["logits"] = self.classifier(res["pooled"].astype(self.dtype)).astype(jnp.float32)
    return {o: res[o] for o in outputs}


def torch_rules(name: str) -> list:
  """Name map from torchvision's ResNet state dict (`layer2.0.downsample.1.running_mean` style)
  to this module's parameter paths; the flat block index is mapped to `layer{L}.{j}`."""
  bn = (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var"))
  rules = [Rule(r"stem_conv/kernel", "conv1.weight", "conv"),
           Rule(r"classifier/kernel", "fc.weight", "dense"),
           Rule(r"classifier/bias", "fc.bias")]
  rules += [Rule(f"stem_bn/{ours}", f"bn1.{theirs}") for ours, theirs in bn]
  for i, spec in enumerate(block_specs(name)):
    p = spec.torch_prefix
    rules.append(Rule(rf"blocks/{i}/(conv[123])/kernel", rf"{p}.\1.weight", "conv"))
    rules.append(Rule(rf"blocks/{i}/downsample_conv/kernel", f"{p}.downsample.0.weight", "conv"))
    for ours, theirs in bn:
      rules.append(Rule(rf"blocks/{i}/(bn[123])/{ours}", rf"{p}.\1.{theirs}"))
      rules.append(Rule(rf"blocks/{i}/downsample_bn/{ours}", f"{p}.downsample.1.{theirs}"))
  return rules


TORCH_IGNORE = (r".*num_batches_tracked",)
