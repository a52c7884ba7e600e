"""EfficientNet-Lite (the "lite" variants of Tan & Le's TF EfficientNet release) in Flax NNX.

Architecture facts of the lite family: MBConv blocks without squeeze-and-excitation, ReLU6
activations, TensorFlow "SAME" padding, batch-norm epsilon 1e-3, and a stem (32 channels) and head
(1280 channels) that are not scaled with width; the first and last stages keep their repeat count.
Inputs are RGB scaled as (x - 127) / 128.

The forward pass can return intermediate outputs (`stem`, `stage1` .. `stage7`, `head`, `pooled`,
`logits`) and stops after the deepest one asked for.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.checkpoints.convert import Rule
from vidrec_jax.models.backbones.common import DepthwiseConv
from vidrec_jax.models.backbones.common import FrozenBatchNorm
from vidrec_jax.models.backbones.common import StagedBackbone
from vidrec_jax.models.backbones.common import pointwise
from vidrec_jax.models.partitioning import param

# (repeats, kernel, stride, expand ratio, input channels, output channels) per stage, lite0 widths.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# name -> (width multiplier, depth multiplier, resolution)
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite1": (1.0, 1.1, 240),
            "efficientnet_lite2": (1.1, 1.2, 260), "efficientnet_lite3": (1.2, 1.4, 280),
            "efficientnet_lite4": (1.4, 1.8, 300)}
STEM, HEAD, NUM_CLASSES, BN_EPS = 32, 1280, 1000, 1e-3
OUTPUTS = ("stem",) + tuple(f"stage{i + 1}" for i in range(len(STAGES))) + (
    "head", "pooled", "logits")
MEAN, STD = 127.0, 128.0


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Channel count scaled by `width`, rounded to a multiple of `divisor`, never 10% below."""
  scaled = filters * width
  out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  if out < 0.9 * scaled:
    out += divisor
  return int(out)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  cin: int
  cout: int
  kernel: int
  stride: int
  expand: int
  stage: int

  @property
  def output(self) -> str:
    return f"stage{self.stage + 1}"


def block_specs(name: str) -> list[BlockSpec]:
  width, depth, _ = VARIANTS[name]
  specs = []
  last = len(STAGES) - 1
  for s, (reps, k, stride, e, cin, cout) in enumerate(STAGES):
    cin = STEM if s == 0 else round_filters(cin, width)
    cout = round_filters(cout, width)
    reps = reps if s in (0, last) else int(math.ceil(depth * reps))
    for r in range(reps):
      specs.append(BlockSpec(cin if r == 0 else cout, cout, k, stride if r == 0 else 1, e, s))
  return specs


def _kernel(names):
  return param(nnx.initializers.lecun_normal(), names)


def _conv(cin, cout, k, stride=1, groups=1, *, dtype, param_dtype, rngs):
  return nnx.Conv(cin, cout, (k, k), (stride, stride), padding="SAME", feature_group_count=groups,
                  use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
                  kernel_init=_kernel((None, None, "conv_in", "conv_out")))


class MBConv(nnx.Module):
  """Inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project; residual when shapes allow."""

  def __init__(self, spec: BlockSpec, *, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    mid = spec.cin * spec.expand
    self.spec = spec
    if spec.expand != 1:
      self.expand_conv = _conv(spec.cin, mid, 1, **kw)
      self.expand_bn = FrozenBatchNorm(mid, param_dtype=param_dtype, eps=BN_EPS)
    else:
      self.expand_conv, self.expand_bn = None, None
    self.dw_conv = DepthwiseConv(mid, spec.kernel, spec.stride, **kw)
    self.dw_bn = FrozenBatchNorm(mid, param_dtype=param_dtype, eps=BN_EPS)
    self.project_conv = _conv(mid, spec.cout, 1, **kw)
    self.project_bn = FrozenBatchNorm(spec.cout, param_dtype=param_dtype, eps=BN_EPS)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = x
    if self.expand_conv is not None:
      y = jax.nn.relu6(self.expand_bn(pointwise(self.expand_conv, y)))
    y = jax.nn.relu6(self.dw_bn(self.dw_conv(y)))
    y = self.project_bn(pointwise(self.project_conv, y))
    if self.spec.stride == 1 and self.spec.cin == self.spec.cout:
      y = y + x
    return y


class EfficientNetLite(nnx.Module, StagedBackbone):
  """EfficientNet-Lite classifier whose forward can return intermediate outputs."""

  OUTPUTS = OUTPUTS
  STEM_CHANNELS = STEM
  HEAD_CHANNELS = HEAD

  def __init__(self, name: str = "efficientnet_lite0", *, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if name not in VARIANTS:
      raise ValueError(f"EfficientNet-Lite variant {name!r} unknown; allowed: "
                       f"{', '.join(VARIANTS)}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.name = name
    self.resolution = VARIANTS[name][2]
    self.dtype = dtype
    self.specs = block_specs(name)
    self.stem_conv = _conv(3, STEM, 3, 2, **kw)
    self.stem_bn = FrozenBatchNorm(STEM, param_dtype=param_dtype, eps=BN_EPS)
    self.blocks = nnx.List([MBConv(s, **kw) for s in self.specs])
    self.head_conv = _conv(self.specs[-1].cout, HEAD, 1, **kw)
    self.head_bn = FrozenBatchNorm(HEAD, param_dtype=param_dtype, eps=BN_EPS)
    self.classifier = nnx.Linear(
        HEAD, NUM_CLASSES, dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        kernel_init=_kernel(("conv_out", "classes")),
        bias_init=param(nnx.initializers.zeros_init(), ("classes",)))

  def __call__(self, x: jax.Array, outputs=("logits",)) -> dict[str, jax.Array]:
    """x: normalised RGB (N, H, W, 3). Returns the requested outputs by name."""
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
      raise ValueError(f"unknown EfficientNet-Lite outputs {unknown}; allowed: {OUTPUTS}")
    deepest = max(OUTPUTS.index(o) for o in outputs)
    res = {}
    x = jax.nn.relu6(self.stem_bn(self.stem_conv(x.astype(self.dtype))))
    res["stem"] = x
    for i, (spec, block) in enumerate(zip(self.specs, self.blocks)):
      if OUTPUTS.index(f"stage{spec.stage + 1}") > deepest:
        break
      x = block(x)
      last_of_stage = i + 1 == len(self.specs) or self.specs[i + 1].stage != spec.stage
      if last_of_stage:
        res[f"stage{spec.stage + 1}"] = x
    if deepest >= OUTPUTS.index("head"):
      x = jax.nn.relu6(self.head_bn(pointwise(self.head_conv, x)))
      res["head"] = x
      res["pooled"] = x.astype(jnp.float32).mean(axis=(1, 2))
      if deepest >= OUTPUTS.index("logits"):
        res["logits"] = self.classifier(res["pooled"].astype(self.dtype)).astype(jnp.float32)
    return {o: res[o] for o in outputs}


def torch_rules() -> list:
  """Name map from the PyTorch EfficientNet-Lite state dict (`_blocks.N._bn0.running_mean` style)
  to this module's parameter paths."""
  bn = (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var"))
  rules = [Rule(r"stem_conv/kernel", "_conv_stem.weight", "conv"),
           Rule(r"head_conv/kernel", "_conv_head.weight", "conv"),
           Rule(r"classifier/kernel", "_fc.weight", "dense"),
           Rule(r"classifier/bias", "_fc.bias")]
  for ours, theirs in bn:
    rules += [Rule(f"stem_bn/{ours}", f"_bn0.{theirs}"), Rule(f"head_bn/{ours}", f"_bn1.{theirs}")]
    for our_bn, their_bn in (("expand_bn", "_bn0"), ("dw_bn", "_bn1"), ("project_bn", "_bn2")):
      rules.append(Rule(rf"blocks/(\d+)/{our_bn}/{ours}", rf"_blocks.\1.{their_bn}.{theirs}"))
  for our_conv, their_conv in (("expand_conv", "_expand_conv"), ("dw_conv", "_depthwise_conv"),
                               ("project_conv", "_project_conv")):
    rules.append(Rule(rf"blocks/(\d+)/{our_conv}/kernel", rf"_blocks.\1.{their_conv}.weight",
                      "conv"))
  return rules


TORCH_IGNORE = (r".*num_batches_tracked",)
