"""Logged slates of a known behaviour policy, with its propensities, for off-policy learning.

The behaviour policy is a click ranker with softmax exploration: each slate is K videos drawn
without replacement from softmax(click logit / temperature) over the warm videos a user has
not clicked this session, where the click logit is the user's true static one (appeal and
taste, blind to satiation, interest and quality: what a well-trained click model predicts).
Cold videos are never shown: they are published after the logging period. The propensity
logged for each slate video is its single-draw probability under that softmax, beta(a|s).

Sessions of a user follow each other: each starts from the watch history the previous one
left. Rows are the steps that happened (the session had budget left).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.rl import simulator as sim_lib


@dataclasses.dataclass(frozen=True)
class Logs:
  """One row per logged step. `ret` is the discounted return-to-go from the step; `video` is
  the clicked video (-1: no click); `beta` the behaviour propensities of the slate."""

  user: np.ndarray  # (n,)
  session: np.ndarray  # (n,) global session index
  step: np.ndarray  # (n,) step within the session
  history: np.ndarray  # (n, L) watch history before the step
  slate: np.ndarray  # (n, K)
  beta: np.ndarray  # (n, K)
  choice: np.ndarray  # (n,) slate index clicked or -1
  video: np.ndarray  # (n,)
  reward: np.ndarray  # (n,) watch seconds
  ret: np.ndarray  # (n,) discounted return-to-go
  num_sessions: int
  final_histories: np.ndarray  # (U, L) every user's history after their last logged session

  def __len__(self) -> int:
    return len(self.user)

  @property
  def clicked(self) -> np.ndarray:
    return self.video >= 0

  def save(self, path: str) -> None:
    np.savez(path, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

  @classmethod
  def load(cls, path: str) -> "Logs":
    with np.load(path) as z:
      kw = {f.name: z[f.name] for f in dataclasses.fields(cls)}
    kw["num_sessions"] = int(kw["num_sessions"])
    return cls(**kw)


def behaviour_policy(sim: sim_lib.Simulator, temperature: float) -> sim_lib.Policy:
  warm = jnp.asarray(~sim.cold)
  k = sim.args.slate_size

  def policy(params, state, key):
    del params
    logits = sim_lib.masked_logits(
        sim.arrays["static_logit"][state["user"]] / temperature, state, warm)
    slate = sim_lib.gumbel_top_k(key, logits, k)
    return slate, jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), slate, axis=1)
  return policy


def collect(sim: sim_lib.Simulator, policy: sim_lib.Policy, histories: np.ndarray,
            sessions: int, discount: float, key: jax.Array) -> Logs:
  """`sessions` consecutive sessions of every user under `policy`, from `histories`."""
  users = np.arange(sim.num_users)
  rows = []
  hist = histories
  for s in range(sessions):
    final, out = sim.rollout(policy, sim.reset(users, hist), jax.random.fold_in(key, s))
    ret = sim_lib.session_returns(out["reward"], discount)
    out = jax.device_get(dict(out, ret=ret))
    hist = np.asarray(final["history"])
    t_idx, b_idx = np.nonzero(out["alive"])
    rows.append(dict(user=users[b_idx], session=s * len(users) + users[b_idx], step=t_idx,
                     **{k: np.asarray(out[k])[t_idx, b_idx] for k in
                        ("history", "slate", "choice", "video", "reward", "ret")},
                     beta=np.asarray(out["propensity"])[t_idx, b_idx]))
  cat = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
  return Logs(**{k: cat[k].astype(np.float32 if k in ("reward", "ret", "beta") else np.int64)
                 for k in cat},
              num_sessions=sessions * len(users), final_histories=hist.astype(np.int64))
