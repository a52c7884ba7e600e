"""Video titles as pipeline inputs: the cached embedding of a frozen text tower, or token ids for a
text tower that trains, plus `title_group` (an id shared by videos with the same title, which
the text-matching loss masks as accidental positives).

The cache is `embeddings.npy` (float32 (num_videos, dim), L2-normalised, row = video id) and
`meta.json`, written last, in the text cache directory (default WORKDIR/text_features); it is
written by vidrec_jax/train/text_cache.py.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
from absl import logging

from vidrec_jax.data import features

EMBEDDINGS = "embeddings.npy"


def expected_meta(model: str, max_length: int, count: int) -> dict:
  """Settings a title cache must have been written with."""
  return dict(model=model, max_length=max_length, count=count)


class TitleInputs:
  """video id -> its title inputs (see the module docstring)."""

  def __init__(self, titles: np.ndarray, embeddings: np.ndarray | None = None,
               tokens: dict[str, np.ndarray] | None = None):
    if (embeddings is None) == (tokens is None):
      raise ValueError("TitleInputs takes cached embeddings or tokens, exactly one")
    _, group = np.unique(np.asarray(titles), return_inverse=True)
    self.group = group.astype(np.int32)
    self.embeddings, self.tokens = embeddings, tokens

  @classmethod
  def cached(cls, titles: np.ndarray, text_dir: str, model: str, max_length: int
             ) -> "TitleInputs":
    """From the title cache in `text_dir`, or a one-line CacheError when it does not fit."""
    meta = features.check_meta(text_dir, expected_meta(model, max_length, len(titles)))
    emb = np.load(os.path.join(text_dir, EMBEDDINGS))
    if emb.shape != (len(titles), meta["dim"]):
      raise features.CacheError(f"text cache {text_dir} holds {emb.shape} embeddings for "
                                f"{len(titles)} titles; extract it again")
    return cls(titles, embeddings=emb)

  @classmethod
  def tokenized(cls, titles: np.ndarray, tokenizer: Callable) -> "TitleInputs":
    """Token ids and masks of every title, by `tokenizer(list[str]) -> (arrays, stats)`."""
    tokens, stats = tokenizer(list(titles))
    logging.info("titles tokenised: %s", stats.summary())
    return cls(titles, tokens={"title_ids": tokens["input_ids"],
                               "title_mask": tokens["attention_mask"]})

  def __call__(self, video_id: int) -> dict[str, np.ndarray]:
    v = int(video_id)
    if self.embeddings is not None:
      return {"title_emb": self.embeddings[v], "title_group": self.group[v]}
    return {**{k: a[v] for k, a in self.tokens.items()}, "title_group": self.group[v]}
