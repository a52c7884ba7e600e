"""Video titles for the text tower: embedded once by the frozen pretrained sentence encoder and
cached, or tokenised once per catalog for a text tower that trains.

The cache is `embeddings.npy` (float32 (num_videos, dim), L2-normalised, row = video id) and
`meta.json`, written last, in the text cache directory (default WORKDIR/text_features).
Missing titles, non-UTF-8 bytes and titles past `model.text.max_length` tokens are counted in
the log and in the metadata; the run goes on.
"""

from __future__ import annotations

import os
import time

import ml_collections
import numpy as np
from absl import logging

from vidrec_jax.data import features

EMBEDDINGS = "embeddings.npy"


def uses_text(model_cfg: ml_collections.ConfigDict) -> bool:
  """Whether the model reads titles at all (the item tower or the text-matching task)."""
  return bool(model_cfg.text.item_tower) or "text_match" in model_cfg.tasks


def from_cache(model_cfg: ml_collections.ConfigDict) -> bool:
  return uses_text(model_cfg) and model_cfg.text.train_mode == "frozen"


def expected_meta(config: ml_collections.ConfigDict, num_videos: int) -> dict:
  t = config.model.text
  return dict(model=t.name, max_length=t.max_length, count=num_videos)


def extract(config: ml_collections.ConfigDict, titles: np.ndarray, out_dir: str) -> dict:
  """Embeds every title with the frozen encoder into `out_dir`; returns the metadata.

  A finished cache with the same settings is kept. Call it on process 0 only: the whole catalog
  is a few milliseconds of encoder time per thousand titles.
  """
  from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
  want = expected_meta(config, len(titles))
  if os.path.exists(os.path.join(out_dir, features.META)):
    try:
      return features.check_meta(out_dir, want)
    except features.CacheError as e:
      logging.warning("%s: extracting the text cache again", e)
  os.makedirs(out_dir, exist_ok=True)
  t0 = time.time()
  encode = text.pretrained_sentence_encoder(config.model.text.name,
                                            max_length=config.model.text.max_length)
  emb, stats = encode(list(titles), return_stats=True)
  tmp = os.path.join(out_dir, EMBEDDINGS + ".tmp.npy")
  np.save(tmp, emb.astype(np.float32))
  os.replace(tmp, os.path.join(out_dir, EMBEDDINGS))
  meta = dict(want, dim=int(emb.shape[1]), missing=stats.missing, empty=stats.empty,
              replaced=stats.replaced, truncated=stats.truncated)
  features.write_meta(out_dir, meta)
  logging.info("text cache: %d titles embedded in %.1f s into %s (%s)", len(titles),
               time.time() - t0, out_dir, stats.summary())
  return meta


class TitleInputs:
  """Per-video title inputs of the pipeline: the cached embedding (frozen text tower) or the
  token ids and mask (a text tower that trains), plus `title_group`, an id shared by videos
  with the same title (the contrastive loss masks such accidental positives)."""

  def __init__(self, config: ml_collections.ConfigDict, titles: np.ndarray,
               text_dir: str | None):
    t = config.model.text
    self.cached = t.train_mode == "frozen"
    _, self.group = np.unique(np.asarray(titles), return_inverse=True)
    self.group = self.group.astype(np.int32)
    if self.cached:
      meta = features.check_meta(text_dir, expected_meta(config, len(titles)))
      self.embeddings = np.load(os.path.join(text_dir, EMBEDDINGS))
      if self.embeddings.shape != (len(titles), meta["dim"]):
        raise features.CacheError(f"text cache {text_dir} holds {self.embeddings.shape} "
                                  f"embeddings for {len(titles)} titles; extract it again")
    else:
      from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
      tokens, stats = text.load_tokenizer(t.name, t.max_length)(list(titles), t.max_length)
      logging.info("titles tokenised at %d tokens: %s", t.max_length, stats.summary())
      self.ids, self.mask = tokens["input_ids"], tokens["attention_mask"]

  def __call__(self, video_id: int) -> dict[str, np.ndarray]:
    v = int(video_id)
    if self.cached:
      return {"title_emb": self.embeddings[v], "title_group": self.group[v]}
    return {"title_ids": self.ids[v], "title_mask": self.mask[v], "title_group": self.group[v]}


TITLE_KEYS = ("title_emb", "title_ids", "title_mask", "title_group")
