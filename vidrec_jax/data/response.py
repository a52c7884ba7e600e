"""The user response model: how a user who is shown a video responds to it. One part, used by
the synthetic world's logging (vidrec_jax/data/world.py, numpy) and by the RL user simulator
(vidrec_jax/rl/simulator.py, JAX): pass `xp=jax.numpy` for the latter.

  examination   a slate position's chance of being looked at: (1 + position) ** -power
  click         sigmoid of the click logit (a user examining the video)
  watch share   sigmoid(affinity + noise): the share of the video a clicking user watches
  like          sigmoid(2 * affinity - 2) among clicks

Randomness stays with the caller (a numpy Generator in the world, JAX keys in the simulator), so
the world's files are unchanged by this module.
"""

from __future__ import annotations

import numpy as np

WATCH_NOISE_STD = 0.5  # std of the per-view noise added to affinity in the watch share


def sigmoid(x, xp=np):
  return 1.0 / (1.0 + xp.exp(-x))


def examination(position, power: float, xp=np):
  """Probability that slate position `position` (0 = top) is examined."""
  del xp
  return (1.0 + position) ** (-power)


def click_probability(logit, xp=np):
  """Click probability of a user examining a video with this true click logit."""
  return sigmoid(logit, xp)


def watch_share(affinity, noise, xp=np):
  """Share of the video watched after a click; `noise` ~ N(0, WATCH_NOISE_STD) per view."""
  return sigmoid(affinity + noise, xp)


def like_probability(affinity, xp=np):
  """Probability that a click ends in a like."""
  return sigmoid(2.0 * affinity - 2.0, xp)
