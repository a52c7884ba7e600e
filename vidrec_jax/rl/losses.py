"""REINFORCE on logged slates with the corrections of Chen et al. (WSDM 2019, "Top-K
Off-Policy Correction for a REINFORCE Recommender System"), and off-policy value estimates.

For a logged step with state s, an action a (the clicked video; or, with `rl.actions='slate'`,
each video of the slate shown), behaviour propensity beta(a|s) and discounted return-to-go R
from the step, the loss is -w * log pi(a|s), with the weight w (no gradient through it) by
`correction`:

  supervised  1                                    (the click model: the greedy ranker)
  ips_click   min(pi/beta, cap)                    (the click model de-biased from the
                                                    behaviour's exposure: reward = click)
  none        R                                    (REINFORCE, no correction)
  standard    min(pi/beta, cap) * R                (off-policy correction, capped weights)
  topk        min(pi/beta, cap) * K (1-pi)^(K-1) * R   (top-K off-policy correction)

The top-K factor is the derivative of the chance 1 - (1 - pi)^K that a video is among K draws
from pi: it vanishes as pi(a) -> 1, so a policy that shows K videos keeps mass on the next ones
instead of piling it all on the best one. Importance weights are first-order (per step, not
products over the session), as in the paper. `ips_click` separates the two things the
corrections do: it removes the behaviour's exposure bias from the click model without crediting
long-term return, so greedy -> ips_click is the de-biasing and ips_click -> reinforce_offpolicy
the long-term credit.

Each correction is a `Correction` registered in `CORRECTIONS` under its `rl.correction` name;
the RL policies that train with it are in rl/policies/.

Off-policy value estimates of a trained policy are in rl/estimators.py.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.registry import Registry

# (pi, beta, ret, cap, K) -> the per-example weight w; its arguments carry no gradient
Weight = Callable[[jax.Array, jax.Array, jax.Array, float, int], jax.Array]


@dataclasses.dataclass(frozen=True)
class Correction:
  """A REINFORCE weight, registered by the name `rl.correction` gives. `click_model`: the
  reward is the click, so it learns from the clicked video whatever `rl.actions` says."""

  weight: Weight
  click_model: bool = False


# A REINFORCE variant is a correction registered here (or from a module of its own: a test, or
# `config.imports`) and an RL policy naming it (rl/policies/).
CORRECTIONS: Registry[Correction] = Registry("correction")


def capped_ratio(pi: jax.Array, beta: jax.Array, cap: float) -> jax.Array:
  """min(pi / beta, cap); a zero propensity counts as the cap."""
  return jnp.minimum(pi / jnp.maximum(beta, 1e-30), cap)


def topk_factor(pi: jax.Array, k: int) -> jax.Array:
  """lambda_K = K (1 - pi)^(K - 1)."""
  return k * (1.0 - pi) ** (k - 1)


CORRECTIONS.register("supervised", Correction(
    lambda pi, beta, ret, cap, k: jnp.ones_like(ret), click_model=True))
CORRECTIONS.register("ips_click", Correction(
    lambda pi, beta, ret, cap, k: capped_ratio(pi, beta, cap) * jnp.ones_like(ret),
    click_model=True))
CORRECTIONS.register("none", Correction(lambda pi, beta, ret, cap, k: ret))
CORRECTIONS.register("standard", Correction(
    lambda pi, beta, ret, cap, k: capped_ratio(pi, beta, cap) * ret))
CORRECTIONS.register("topk", Correction(
    lambda pi, beta, ret, cap, k: capped_ratio(pi, beta, cap) * topk_factor(pi, k) * ret))


def weights(correction: str, pi: jax.Array, beta: jax.Array, ret: jax.Array, cap: float,
            k: int) -> jax.Array:
  """The per-example REINFORCE weight of the registered `correction` (see the module
  docstring); an unknown name lists the registered ones."""
  pi, beta, ret = (jax.lax.stop_gradient(x) for x in (pi, beta, ret))
  return CORRECTIONS.get(correction).weight(pi, beta, ret, cap, k)


def reinforce_loss(logits: jax.Array, action: jax.Array, beta: jax.Array, ret: jax.Array,
                   mask: jax.Array, correction: str, cap: float, k: int
                   ) -> tuple[jax.Array, dict]:
  """Mean over the masked actions of -w * log pi(a|s). logits (B, N); action, beta, ret and
  mask (B,) for one action per state, or (B, A) for A actions per state (a whole slate)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  shape = action.shape
  logp_a = jnp.take_along_axis(logp, action.reshape(shape[0], -1), axis=1).reshape(shape)
  pi = jnp.exp(logp_a)
  w = weights(correction, pi, beta, ret, cap, k) * mask
  n = jnp.maximum(mask.sum(), 1.0)
  ratio = capped_ratio(jax.lax.stop_gradient(pi), beta, np.inf)
  stats = {"weight_mean": w.sum() / n, "pi_action": (pi * mask).sum() / n,
           "capped_share": ((ratio > cap) * mask).sum() / n}
  return -(w * logp_a).sum() / n, stats

