"""Titles in the model: the sentence encoder of a title (when it trains; a frozen one is read
from the title embedding cache) and the projection that adds it to the item vector.

The encoder is a registered pretrained part ("text"): state initialisation loads its weights,
and `model.text.train_mode` decides which of its layers train.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.checkpoints.parts import PRETRAINED_PARTS
from vidrec_jax.checkpoints.parts import PretrainedPart
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.models import layers
from vidrec_jax.models import text as text_lib
from vidrec_jax.models.tasks import TASKS

TRAIN_MODES = ("frozen", "top_layers", "full")
TEXT_PREFIX = "titles/encoder/"  # the model's `titles` tower, its `encoder`


@dataclasses.dataclass(frozen=True)
class TextArgs:
  """The `model.text` config section.

  Attributes:
    name: a registered text model (vidrec_jax.models.text).
    item_tower: add the title embedding (through an MLP) to the item vector.
    train_mode: frozen (embeddings cached once per catalog), top_layers or full.
    top_layers: transformer layers that train with `top_layers`.
    max_length: tokens per title, [CLS] and [SEP] included.
  """

  name: str
  item_tower: bool
  train_mode: str
  top_layers: int
  max_length: int

  @classmethod
  def from_config(cls, model_cfg) -> "TextArgs":
    return cls(**typed_kwargs(cls, model_cfg.text, "model.text"))


def uses_titles(model_cfg) -> bool:
  """Whether the model reads titles at all (the item tower, or a task that needs them)."""
  return bool(model_cfg.text.item_tower) or any(TASKS.get(t).needs_titles
                                                for t in model_cfg.tasks)


def title_mode(model_cfg) -> str:
  """'' (no titles), 'cached' (frozen encoder: cached embeddings) or 'tokens'."""
  if not uses_titles(model_cfg):
    return ""
  return "cached" if model_cfg.text.train_mode == "frozen" else "tokens"


class TitleTower(nnx.Module):
  """Title inputs -> unit-norm sentence embeddings (B, dim), and their item-tower projection."""

  def __init__(self, *, text: TextArgs, embed_dim: int, dtype, param_dtype, rngs: nnx.Rngs):
    bert = text_lib.bert_config(text.name)
    self.dim = bert.hidden
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.encoder = (text_lib.BertEncoder(bert, **kw) if text.train_mode != "frozen" else None)
    self.proj = (layers.MLP((bert.hidden, embed_dim, embed_dim), ("embed", "mlp"), **kw)
                 if text.item_tower else None)

  def embedding(self, batch: dict) -> jax.Array:
    """Cached embeddings (`title_emb`), or the encoder's mean-pooled tokens."""
    if self.encoder is None:
      return batch["title_emb"].astype(jnp.float32)
    states = self.encoder(batch["title_ids"], batch["title_mask"])
    return text_lib.l2_normalize(text_lib.mean_pool(states, batch["title_mask"]))


@functools.lru_cache(maxsize=None)
def _num_layers(name: str) -> int:
  return text_lib.bert_config(name).num_layers


def _text_trainable(path: str, model_cfg) -> bool:
  t = TextArgs.from_config(model_cfg)
  return text_lib.text_label(path, t.train_mode, t.top_layers, _num_layers(t.name)) == "text"


PRETRAINED_PARTS.register("text", PretrainedPart(
    prefix=TEXT_PREFIX,
    weights=lambda model_cfg: text_lib.converted_params(model_cfg.text.name),
    trainable=_text_trainable, lr_factor="text_learning_rate_factor"))
