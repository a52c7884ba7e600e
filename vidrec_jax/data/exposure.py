"""What the synthetic world's logged slates show (data/world.py): with `exposure_taste` > 0, the
slates of a segment-level feed, which favours what each user's persona likes, as logged feeds
do; with 0 the world draws its slates uniformly from the catalog itself."""

from __future__ import annotations

import numpy as np

from vidrec_jax.data.world_config import WorldConfig


def feed_slates(c: WorldConfig, persona_taste: np.ndarray, features: np.ndarray,
                persona: np.ndarray, late: np.ndarray, warm: np.ndarray, cold: np.ndarray
                ) -> np.ndarray:
  """(num_slates, slate_size) videos shown by a segment-level feed: each slot drawn from the
  published videos with probability proportional to exp(exposure_taste * the persona's
  affinity), without repeats within a slate; after publication a slot shows a cold video with
  probability `cold_share_after_publish`, as the uniform slates. From a generator of its own
  (worlds with exposure_taste = 0 draw exactly what they drew before it existed).

  Args:
    c: the world's arguments.
    persona_taste: (P, F) each persona's centred, weighted taste over the video factors.
    features: (N, F) each video's factor one-hots.
    persona: (S,) the persona of each slate's user.
    late: (S,) whether each slate is shown after the cold videos are published.
    warm, cold: the ids of the videos published from the start and at the end of training.
  """
  rng = np.random.default_rng([c.seed, 2])
  out = np.empty((len(persona), c.slate_size), np.int64)
  cold_slot = late[:, None] & (rng.random(out.shape) < c.cold_share_after_publish) & (
      len(cold) > 0)
  for pool, slot in ((warm, ~cold_slot), (cold, cold_slot)):
    if not len(pool):
      continue
    logits = c.exposure_taste * (persona_taste @ features[pool].T)  # (P, |pool|)
    cdf = np.cumsum(np.exp(logits - logits.max(1, keepdims=True)), axis=1)
    cdf /= cdf[:, -1:]
    for p in range(len(cdf)):
      rows, cols = np.nonzero(slot & (persona == p)[:, None])
      draw = np.searchsorted(cdf[p], rng.random(len(rows)), side="right")
      out[rows, cols] = pool[np.minimum(draw, len(pool) - 1)]
  # A video twice in one slate: redraw that slot uniformly among the pool's videos not shown.
  for s in np.flatnonzero([len(set(r)) < len(r) for r in out.tolist()]):
    seen = set()
    for j in range(c.slate_size):
      v = int(out[s, j])
      if v in seen:
        pool = cold if cold_slot[s, j] and len(cold) > c.slate_size else warm
        rest = np.setdiff1d(pool, list(seen) + out[s].tolist())
        v = int(rng.choice(rest)) if len(rest) else v
        out[s, j] = v
      seen.add(v)
  return out
