"""WordPiece tokenisation for the sentence encoders: a model's `tokenizer.json` through the
`tokenizers` package, truncating (counted) and padding to a bucketed length."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vidrec_jax.data.text_clean import TextStats
from vidrec_jax.data.text_clean import clean_texts

PAD_MULTIPLE = 8  # sequence lengths are padded to a multiple of this: few jit shapes


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class TextTokenizer:
  """WordPiece tokenisation with the model's own `tokenizer.json` (via `tokenizers`), truncation
  to `max_length` tokens ([CLS] and [SEP] included) and padding to a multiple of `pad_multiple`.

  Calling it returns ({"input_ids", "attention_mask", "token_type_ids"}: int32 (N, L)), TextStats).
  """

  def __init__(self, path: str, max_length: int, max_positions: int,
               pad_multiple: int = PAD_MULTIPLE, pad_id: int = 0):
    try:
      import tokenizers  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("the text encoder needs the `tokenizers` package: "
                        "`pip install tokenizers`") from e
    if not 2 <= max_length <= max_positions:
      raise ValueError(f"max_length must be in [2, {max_positions}], got {max_length}")
    self._tok = tokenizers.Tokenizer.from_file(path)
    # tokenizer.json may carry its own truncation and fixed padding (all-MiniLM-L6-v2's says 128
    # and 128); the sentence-transformers pipeline overrides both, and so do we.
    self._tok.no_padding()
    self._tok.enable_truncation(max_length)
    self.max_length, self.max_positions = max_length, max_positions
    self.pad_multiple, self.pad_id = pad_multiple, pad_id

  def encode(self, texts: Sequence[Any]) -> tuple[list, TextStats]:
    """Cleaned, tokenised (unpadded) encodings and the stats of cleaning and truncation."""
    clean, stats = clean_texts(texts)
    encodings = self._tok.encode_batch(clean, add_special_tokens=True) if clean else []
    stats.truncated = sum(bool(e.overflowing) for e in encodings)
    return encodings, stats

  def pad(self, encodings: Sequence, length: int | None = None) -> dict[str, np.ndarray]:
    """Stacks encodings into int32 (N, L) arrays; L = `length` or the bucketed longest."""
    longest = max((len(e.ids) for e in encodings), default=2)
    if length is None:
      length = min(_round_up(longest, self.pad_multiple), self.max_positions)
    if length < longest:
      raise ValueError(f"pad length {length} is shorter than the longest encoding {longest}")
    n = len(encodings)
    ids = np.full((n, length), self.pad_id, np.int32)
    mask = np.zeros((n, length), np.int32)
    types = np.zeros((n, length), np.int32)
    for i, e in enumerate(encodings):
      k = len(e.ids)
      ids[i, :k], mask[i, :k], types[i, :k] = e.ids, e.attention_mask, e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

  def __call__(self, texts: Sequence[Any], length: int | None = None
               ) -> tuple[dict[str, np.ndarray], TextStats]:
    encodings, stats = self.encode(texts)
    return self.pad(encodings, length), stats
