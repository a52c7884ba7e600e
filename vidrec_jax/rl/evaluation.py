"""A policy's truth in the simulator and its off-policy estimates from held-out logs: what the
shared runner (vidrec_jax/train/runner.py) evaluates during and after RL training.

Every evaluation simulates `sessions` sessions of every user, each from the watch history the
training logs left, with the same keys for every policy and evaluation (common random numbers:
policies are compared on the same simulated users' luck). Splits are independent key streams:
`valid` is watched during training, `test` reported. On `test`, the held-out logs of the
behaviour policy also give IPS and SNIPS estimates of the policy's return
(rl/estimators.py): weighted as the policy is served, and as its softmax drawing K videos.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.rl import estimators
from vidrec_jax.rl import logs as logs_lib
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.logs import Logs

SPLITS = ("valid", "test")
METRICS = ("return", "clicks", "steps", "likes", "shown_quality", "clicked_quality")
# (params, histories (B, L), seen (B, N) bool: clicked earlier this session) -> logits (B, N),
# -inf where the policy cannot show a video
Scores = Callable[[object, jax.Array, jax.Array], jax.Array]
SERVING = ("top_k", "sample", "sample_replace")


@dataclasses.dataclass(frozen=True)
class Served:
  """A policy as the simulator serves it, its scores, and how its slates are drawn from them
  (estimators.SERVINGS): what the off-policy estimates weight by."""

  policy: sim_lib.Policy
  scores: Scores
  serving: str


@functools.cache
def model_policy(setup, k: int, serving: str = "top_k") -> Served:
  """A trained softmax policy over the videos the user has not clicked this session, served
  greedily (`top_k`: its K highest logits), by drawing K without replacement from its softmax
  (`sample`), or by K independent draws (`sample_replace`: the slate the top-K correction of
  Chen et al. assumes, where a video can fill several positions). Its params are (model
  parameters, catalog arrays); one per (setup, k, serving), so one compiled rollout serves
  every policy and seed served alike."""
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

  def scores(params, history, seen):
    return sim_lib.masked_logits(logits(params, history), {"seen": seen})

  return Served(policy, scores, serving)


def random_policy(num_videos: int, k: int) -> Served:
  """K videos uniformly at random among those not clicked this session."""

  def policy(params, state, key):
    del params
    lg = sim_lib.masked_logits(jnp.zeros(state["seen"].shape, jnp.float32), state)
    slate = sim_lib.gumbel_top_k(key, lg, k)
    return slate, jnp.full(slate.shape, 1.0 / num_videos, jnp.float32)

  def scores(params, history, seen):
    del params
    return jnp.where(seen, -jnp.inf, jnp.zeros((history.shape[0], num_videos), jnp.float32))

  return Served(policy, scores, "uniform")


@functools.cache
def _jit(fn):
  return jax.jit(fn)


class SimulatorEvaluation:
  """`evaluate(params, splits)` -> {split/return, split/clicks, split/steps, split/likes, and
  on test the off-policy estimates from the held-out logs: test/ips, test/snips (weights of
  the policy as served), test/ips_softmax, test/snips_softmax (its softmax drawing K with
  replacement), their standard errors and weight statistics (rl/estimators.py)}."""

  def __init__(self, sim: sim_lib.Simulator, served: Served, start_histories: np.ndarray,
               held_out: Logs, behaviour_inclusion: np.ndarray, sessions: int, seed: int,
               extra=None, batch: int = 2048):
    """`behaviour_inclusion`: (rows, K) P(logged video in the behaviour's slate) of the
    held-out logs (logs.behaviour_inclusion). `extra`: passed to the policy with the
    parameters, as (params, extra), when not None."""
    self.sim, self.served, self.policy = sim, served, served.policy
    self.sessions, self.seed = sessions, seed
    self.extra = extra
    self.start = start_histories
    self.held_out, self.batch = held_out, batch
    self.beta_inclusion = behaviour_inclusion
    self._clicks = logs_lib.session_clicks(held_out)
    self._scores = _jit(served.scores)

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
    logs, k = self.held_out, self.sim.args.slate_size
    served, softmax = [], []
    for lo in range(0, len(logs), self.batch):
      rows = np.arange(lo, min(lo + self.batch, len(logs)))
      seen = logs_lib.session_seen(logs, self._clicks, rows, self.sim.num_videos)
      lg = np.asarray(self._scores(params, jnp.asarray(logs.history[rows], jnp.int32),
                                   jnp.asarray(seen)))
      served.append(estimators.target_inclusion(self.served.serving, lg, logs.slate[rows], k))
      softmax.append(estimators.target_inclusion("sample_replace", lg, logs.slate[rows], k))
    reward = np.zeros(logs.slate.shape)
    clicked = np.flatnonzero(logs.clicked)
    reward[clicked, logs.choice[clicked]] = logs.reward[clicked]
    out = {}
    for suffix, target in (("", served), ("_softmax", softmax)):
      target = np.concatenate(target) if target else np.zeros(logs.slate.shape)
      est = estimators.off_policy_values(target, self.beta_inclusion, reward, logs.num_sessions)
      out.update({f"test/{name}{suffix}": v for name, v in est.items()})
    return out

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
    cols = ("return", "clicks", "steps", "likes", "ips", "snips", "snips_softmax")
    lines = ["split".ljust(8) + "".join(c.rjust(10) for c in cols)]
    for split in SPLITS:
      if any(k.startswith(split + "/") for k in metrics):
        lines.append(split.ljust(8) + "".join(
            f"{metrics.get(f'{split}/{c}', float('nan')):10.3f}" for c in cols))
    return "\n".join(lines)
