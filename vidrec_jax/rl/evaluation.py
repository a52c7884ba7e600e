"""A policy's truth in the simulator and its off-policy estimates from held-out logs: what the
shared runner (vidrec_jax/train/runner.py) evaluates during and after RL training.

Every evaluation simulates `sessions` sessions of every user, each from the watch history the
training logs left, with the same keys for every policy and evaluation (common random numbers:
policies are compared on the same simulated users' luck). Splits are independent key streams:
`valid` is watched during training, `test` reported. On `test`, the held-out logs of the
behaviour policy also give IPS and SNIPS estimates of the policy's return (rl/losses.py).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.rl import losses
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.logs import Logs

SPLITS = ("valid", "test")
METRICS = ("return", "clicks", "steps", "likes", "shown_quality", "clicked_quality")
# (params, histories (B, L)) -> single-draw probabilities (B, N) of the stochastic policy
Probs = Callable[[object, jax.Array], jax.Array]


SERVING = ("top_k", "sample", "sample_replace")


def model_policy(setup, k: int, serving: str = "top_k") -> tuple[sim_lib.Policy, Probs]:
  """A trained softmax policy over the videos the user has not clicked this session, served
  greedily (`top_k`: its K highest logits), by drawing K without replacement from its softmax
  (`sample`), or by K independent draws (`sample_replace`: the slate the top-K correction of
  Chen et al. assumes, where a video can fill several positions); and its softmax, for
  off-policy estimates. Its params are (model parameters, catalog arrays): one compiled
  rollout serves every policy and seed."""
  if serving not in SERVING:
    raise ValueError(f"unknown serving {serving!r}; allowed: {', '.join(SERVING)}")

  def logits(params, history):
    params, catalog = params
    batch = {"history": history, "history_mask": (history >= 0).astype(jnp.float32)}
    return setup.model(params).logits(batch, catalog)[0]

  def policy(params, state, key):
    lg = sim_lib.masked_logits(logits(params, state["history"]), state)
    if serving == "top_k":
      slate = jax.lax.top_k(lg, k)[1]
    elif serving == "sample":
      slate = sim_lib.gumbel_top_k(key, lg, k)
    else:
      slate = jax.random.categorical(key, lg, axis=-1, shape=(k, lg.shape[0])).T
    return slate, jnp.take_along_axis(jax.nn.softmax(lg, axis=-1), slate, axis=1)

  return policy, lambda params, history: jax.nn.softmax(logits(params, history), axis=-1)


def random_policy(num_videos: int, k: int) -> tuple[sim_lib.Policy, Probs]:
  """K videos uniformly at random among those not clicked this session."""

  def policy(params, state, key):
    del params
    lg = sim_lib.masked_logits(jnp.zeros(state["seen"].shape, jnp.float32), state)
    slate = sim_lib.gumbel_top_k(key, lg, k)
    return slate, jnp.full(slate.shape, 1.0 / num_videos, jnp.float32)

  return policy, lambda params, history: jnp.full((history.shape[0], num_videos),
                                                  1.0 / num_videos, jnp.float32)


@functools.cache
def _jit(fn):
  return jax.jit(fn)


class SimulatorEvaluation:
  """`evaluate(params, splits)` -> {split/return, split/clicks, split/steps, split/likes, and
  on test: test/ips, test/snips}."""

  def __init__(self, sim: sim_lib.Simulator, policy: sim_lib.Policy, probs: Probs,
               start_histories: np.ndarray, held_out: Logs, sessions: int, seed: int,
               extra=None, batch: int = 4096):
    """`extra`: passed to the policy with the parameters, as (params, extra), when not None."""
    self.sim, self.policy, self.sessions, self.seed = sim, policy, sessions, seed
    self.extra = extra
    self.start = start_histories
    self.held_out, self.batch = held_out, batch
    self._probs = _jit(probs)

  def simulate(self, params, split: str) -> dict[str, float]:
    users = np.arange(self.sim.num_users)
    key = jax.random.fold_in(jax.random.PRNGKey(self.seed), SPLITS.index(split))
    totals = {"return": [], "clicks": [], "steps": [], "likes": []}
    shown, watched = [], []
    for s in range(self.sessions):
      _, out = self.sim.rollout(self.policy, self.sim.reset(users, self.start),
                                jax.random.fold_in(key, s), params)
      out = jax.device_get(out)
      totals["return"].append(out["reward"].sum(0))
      totals["clicks"].append((out["video"] >= 0).sum(0))
      totals["steps"].append(out["alive"].sum(0))
      totals["likes"].append(out["like"].sum(0))
      shown.append(self.sim.quality[out["slate"][out["alive"]]].ravel())
      watched.append(self.sim.quality[out["video"][out["video"] >= 0]])
    out = {f"{split}/{k}": float(np.mean(np.concatenate(v))) for k, v in totals.items()}
    # What the policy learned to show: the mean quality (latent, N(0, 1) over the catalog) of
    # the videos in its slates and of those clicked.
    out[f"{split}/shown_quality"] = float(np.mean(np.concatenate(shown)))
    out[f"{split}/clicked_quality"] = float(np.mean(np.concatenate(watched)))
    return out

  def off_policy(self, params) -> dict[str, float]:
    logs = self.held_out
    rows = np.flatnonzero(logs.clicked)
    pi = []
    for i in range(0, len(rows), self.batch):
      r = rows[i:i + self.batch]
      p = self._probs(params, jnp.asarray(logs.history[r], jnp.int32))
      pi.append(np.asarray(jnp.take_along_axis(p, jnp.asarray(logs.video[r])[:, None], 1)[:, 0]))
    pi = np.concatenate(pi) if pi else np.zeros(0)
    beta = np.take_along_axis(logs.beta[rows], logs.choice[rows][:, None], axis=1)[:, 0]
    est = losses.off_policy_values(pi, beta, logs.reward[rows], logs.num_sessions,
                                   self.sim.args.slate_size)
    return {f"test/{k}": v for k, v in est.items()}

  def evaluate(self, params, splits: tuple[str, ...] | None = None) -> dict[str, float]:
    if self.extra is not None:
      params = (params, self.extra)
    out = {}
    for split in splits or SPLITS:
      out.update(self.simulate(params, split))
      if split == "test":
        out.update(self.off_policy(params))
    return out

  def format(self, metrics: dict[str, float]) -> str:
    cols = ("return", "clicks", "steps", "likes", "ips", "snips")
    lines = ["split".ljust(8) + "".join(c.rjust(10) for c in cols)]
    for split in SPLITS:
      if any(k.startswith(split + "/") for k in metrics):
        lines.append(split.ljust(8) + "".join(
            f"{metrics.get(f'{split}/{c}', float('nan')):10.3f}" for c in cols))
    return "\n".join(lines)
