"""Pretrained parts of a model: one description per part, used by state initialisation (load the
weights into the freshly created, sharded parameters) and by the optimizer (which parameters
train, and at which learning-rate factor).

A part is active in a model when its parameter prefix appears in the model's parameters (a
frozen backbone trained from its feature cache, or a frozen text tower read from the title
cache, has no parameters at all). Adding a pretrained part (a flow network, another text model)
is one `PRETRAINED_PARTS.register(name, PretrainedPart(...))` next to the module it describes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from vidrec_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class PretrainedPart:
  """Where a pretrained module sits in the model, how to read its weights, what trains.

  Attributes:
    prefix: '/'-joined parameter path prefix of the module inside the model, with a trailing
      '/', e.g. 'frame_encoder/backbone/'.
    weights: model config -> converted arrays keyed by the parameter path below `prefix`.
    trainable: (parameter path below `prefix`, model config) -> whether it trains (False: its
      optimizer label is 'frozen', it gets no update and no gradient).
    lr_factor: the field of `config.train` that scales this part's learning rate.
  """

  prefix: str
  weights: Callable[[Any], Mapping[str, np.ndarray]]
  trainable: Callable[[str, Any], bool]
  lr_factor: str


PRETRAINED_PARTS: Registry[PretrainedPart] = Registry("pretrained part", package="vidrec_jax.models")


def active(param_paths) -> list[tuple[str, PretrainedPart]]:
  """(name, part) of every registered part with parameters among `param_paths`."""
  paths = list(param_paths)
  return [(name, part) for name, part in PRETRAINED_PARTS.items()
          if any(p.startswith(part.prefix) for p in paths)]
