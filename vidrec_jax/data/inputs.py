"""What a model reads from the input pipeline, declared by its parts (models/two_tower.py
`input_spec`) and produced by the Grain pipelines: nothing in data/ names a model part."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """The inputs of one model.

  Attributes:
    clip: clip keys the item tower reads, produced by registered clip ops (data/ops.py), e.g.
      ('frames', 'mask', 'motion'); empty for a model without a content tower.
    titles: '' (no titles), 'cached' (the frozen text tower's embedding: `title_emb`) or
      'tokens' (`title_ids`, `title_mask` for a text tower that trains); either way with
      `title_group`, an id shared by videos with the same title.
    query_view: a second, independently sampled clip of each video under `query_*` keys.
    impression: per-impression columns beside `user` and `weight`: the active heads' labels
      and, with a position bias, `position`.
    history: each impression also carries its user's watch history (`history`,
      `history_mask`: the user's last data.history.max_len positives before it).
    content_type: each clip carries `content_type`, its video's row in model.content_types
      (the OOV row len(content_types) for any other type).
    duration: each clip carries `duration`, its video's length in seconds.
    item_features: per-video features each clip carries under their names (their values by
      video id, models/item_features.py).
    log_q: each training clip carries `log_q`, the log of the probability that its video is
      the clip of a training example (the logQ correction of an in-batch softmax over clips).
  """

  clip: tuple[str, ...]
  titles: str
  query_view: bool
  impression: tuple[str, ...]
  history: bool = False
  log_q: bool = False
  content_type: bool = False
  duration: bool = False
  item_features: tuple[str, ...] = ()

  @property
  def title_keys(self) -> tuple[str, ...]:
    return {"": (), "cached": ("title_emb",), "tokens": ("title_ids", "title_mask")}[self.titles]

  @property
  def item_keys(self) -> tuple[str, ...]:
    """The per-clip keys the item tower reads (what evaluation feeds it)."""
    return (self.clip + self.title_keys + (("content_type",) if self.content_type else ())
            + (("duration",) if self.duration else ()) + self.item_features)
