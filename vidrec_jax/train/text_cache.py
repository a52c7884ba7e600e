"""The title embedding cache of a frozen text tower: every catalog title embedded once by the
pretrained sentence encoder (data/titles.py describes the files and reads them)."""

from __future__ import annotations

import os
import time

import numpy as np
from absl import logging

from vidrec_jax import files
from vidrec_jax.data import features
from vidrec_jax.data import titles as titles_lib
from vidrec_jax.models import text


def extract(model: str, max_length: int, titles: np.ndarray, out_dir: str) -> dict:
  """Embeds every title with the frozen encoder `model` into `out_dir`; returns the metadata.

  A finished cache with the same settings is kept. Call it on process 0 only: the whole catalog
  is a few milliseconds of encoder time per thousand titles. Missing titles, non-UTF-8 bytes and
  titles past `max_length` tokens are counted in the log and in the metadata; the run goes on.
  """
  want = titles_lib.expected_meta(model, max_length, len(titles))
  if os.path.exists(os.path.join(out_dir, features.META)):
    try:
      return features.check_meta(out_dir, want)
    except features.CacheError as e:
      logging.warning("%s: extracting the text cache again", e)
  os.makedirs(out_dir, exist_ok=True)
  t0 = time.time()
  encode = text.pretrained_sentence_encoder(model, max_length=max_length)
  emb, stats = encode(list(titles), return_stats=True)
  with files.atomic_path(os.path.join(out_dir, titles_lib.EMBEDDINGS)) as tmp:
    np.save(tmp, emb.astype(np.float32))
  meta = dict(want, dim=int(emb.shape[1]), missing=stats.missing, empty=stats.empty,
              replaced=stats.replaced, truncated=stats.truncated)
  features.write_meta(out_dir, meta)
  logging.info("text cache: %d titles embedded in %.1f s into %s (%s)", len(titles),
               time.time() - t0, out_dir, stats.summary())
  return meta
