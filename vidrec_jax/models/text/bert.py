"""BERT encoder (the family of sentence-transformers' MiniLM) in Flax NNX, its pooling, and the
declarative map from Hugging Face `BertModel` tensor names onto it."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from vidrec_jax.checkpoints import convert
from vidrec_jax.files import read_json
from vidrec_jax.models import layers
from vidrec_jax.models.attention import LayerNorm
from vidrec_jax.models.partitioning import constrain
from vidrec_jax.models.partitioning import param


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
    raw = read_json(path)
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
  """x / ||x||_2 over the last axis; a row of norm at most eps (a zero row: e.g. the history
  tower's vector of a user with no clicks yet) is returned as it is.

  Safe to differentiate there: the norm's square root is never taken at 0, whose derivative
  (0 * inf) would make every gradient NaN, and the row passes its gradient through unscaled
  rather than divided by eps.
  """
  sq = jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
  big = sq > eps * eps
  return (x / jnp.sqrt(jnp.where(big, sq, 1.0))).astype(x.dtype)


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


def abstract_encoder(cfg: BertConfig, dtype=jnp.float32, param_dtype=jnp.float32
                     ) -> BertEncoder:
  """The encoder with shape-only parameters (no initialisation cost)."""
  return nnx.eval_shape(lambda: BertEncoder(cfg, dtype=dtype, param_dtype=param_dtype,
                                            rngs=nnx.Rngs(0)))
