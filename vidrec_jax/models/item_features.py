"""Per-video item features: a value (or vector) per video that the item tower adds to each
video's vector beside its frames, title and ID, known for a new video as for an old one (a
language, a production year, a channel's size). Registered by name; `model.item_features`
lists the ones a model reads.

A feature is one class: `values(catalog)` reads its per-video array from the dataset's catalog
(raising DataError, one line, when the dataset lacks what it needs), `fake(rng, batch)` gives
random values in its shape for step tests, and the module maps a batch of values (B, ...) to
(B, D) vectors. Its vector starts at zero, so the item vectors start where they would without
it. The pipeline looks each clip's value up by video id (data/pipeline.py `VideoInputs`) under
the feature's name.

Adding a feature: a subclass registered in `ITEM_FEATURES`, in a file of its own under
vidrec_jax/models/ (the registry finds it by name), of a test, or of a module named in
`config.imports` (tests/extension_test.py adds one from a test file). The two built-in per-video
inputs, `content_types` and `item_duration`, predate this seam and keep their own fields.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vidrec_jax.data.datasets.schema import Catalog
from vidrec_jax.models import layers
from vidrec_jax.registry import Registry


class ItemFeature(nnx.Module, abc.ABC):
  """A per-video input (B, ...) -> (B, dim) vectors added to the item vectors. The default
  module is a small MLP over `width` numbers per video whose last layer starts at zero."""

  width = 1  # numbers per video the default module reads

  def __init__(self, dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    self.proj = layers.MLP((self.width, dim, dim), ("embed", "mlp"), zero_last=True,
                           dtype=dtype, param_dtype=param_dtype, rngs=rngs)

  @classmethod
  @abc.abstractmethod
  def values(cls, catalog: Catalog) -> np.ndarray:
    """(num_videos, ...) float32 or int32, row = the catalog's video index."""

  @classmethod
  def fake(cls, rng: np.random.Generator, batch: int) -> np.ndarray:
    """Random values for a batch of clips, in the shape and range `values` gives."""
    return rng.normal(size=(batch, cls.width)).astype(np.float32)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return self.proj(x.reshape(x.shape[0], -1))


ITEM_FEATURES: Registry[type[ItemFeature]] = Registry("item feature",
                                                      package="vidrec_jax.models")
