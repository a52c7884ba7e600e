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

from vidrec_jax.rl import estimators
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


def session_clicks(logs: Logs) -> np.ndarray:
  """(sessions, steps) the video clicked at each step of each logged session, -1 for none:
  built once per logs and read by `session_seen` for any rows."""
  steps = int(logs.step.max(initial=-1)) + 1
  clicks = np.full((logs.num_sessions, max(steps, 1)), -1, np.int64)
  clicks[logs.session, logs.step] = logs.video
  return clicks


def session_seen(logs: Logs, clicks: np.ndarray, rows: np.ndarray, num_videos: int
                 ) -> np.ndarray:
  """(len(rows), num_videos) bool: the videos the user clicked earlier in the same session at
  each logged step, the ones a slate may not repeat (simulator.masked_logits); `clicks` is
  `session_clicks(logs)`."""
  earlier = clicks[logs.session[rows]]  # (n, steps)
  earlier = np.where(np.arange(clicks.shape[1])[None] < logs.step[rows][:, None], earlier, -1)
  seen = np.zeros((len(rows), num_videos + 1), bool)  # the last column takes the -1 pads
  np.put_along_axis(seen, np.where(earlier >= 0, earlier, num_videos), True, 1)
  return seen[:, :num_videos]


def behaviour_logits(sim: sim_lib.Simulator, logs: Logs, clicks: np.ndarray, rows: np.ndarray,
                     temperature: float) -> np.ndarray:
  """(len(rows), N) the behaviour policy's logits at logged steps, -inf where it cannot show a
  video (cold, or clicked earlier in the session): its slates are K draws without replacement
  from their softmax."""
  static = np.asarray(sim.arrays["static_logit"])[logs.user[rows]] / temperature
  bad = session_seen(logs, clicks, rows, sim.num_videos) | sim.cold[None]
  return np.where(bad, -np.inf, static.astype(np.float64))


def behaviour_inclusion(sim: sim_lib.Simulator, logs: Logs, temperature: float,
                        batch: int = 2048) -> np.ndarray:
  """(n, K) exact P(video in the behaviour's slate) of every logged slate video (K draws
  without replacement: rl/estimators.slate_inclusion). The rebuilt single-draw probabilities
  are checked against the logged propensities, so logs written under other settings (another
  temperature, simulator or world) are refused instead of weighted wrongly."""
  out = np.zeros(logs.slate.shape, np.float64)
  clicks = session_clicks(logs)
  for lo in range(0, len(logs), batch):
    rows = np.arange(lo, min(lo + batch, len(logs)))
    lg = behaviour_logits(sim, logs, clicks, rows, temperature)
    p = np.exp(lg - lg.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    single = np.take_along_axis(p, logs.slate[rows], 1)
    err = np.abs(single - logs.beta[rows]).max(initial=0.0)
    if err > 1e-4 + 1e-3 * float(np.abs(logs.beta[rows]).max(initial=0.0)):
      raise ValueError(f"the logged propensities differ from the behaviour policy rebuilt from "
                       f"the simulator (max difference {err:.3g}): the logs were written with "
                       f"other settings; delete the seed's logs_*.npz to log them again")
    out[rows] = estimators.slate_inclusion(lg, logs.slate[rows])
  return out
