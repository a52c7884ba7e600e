"""A user simulator built from the synthetic world, for long-term (session) objectives.

The world (vidrec_jax/data/world.py) gives users' tastes, videos' content factors, topics and
lengths; the response model (vidrec_jax/data/response.py) gives position examination, the watch
share and likes. On top, in the manner of RecSim's interest-evolution environment:

- **Quality and appeal.** Every video has a quality q ~ N(0, 1) and a click appeal correlated
  with it by `appeal_quality_corr` (negative: clickbait draws clicks and disappoints). Appeal
  enters the click logit; quality enters the watch share and the budget.
- **A session budget.** A session starts with `budget` seconds. A step without a click costs
  `step_cost`; a click costs its watch time, of which a share `refund * sigmoid(2 q)` is given
  back: good videos extend the session, poor ones end it sooner. At most `session_steps` steps.
- **Satiation and interest.** A click on a topic raises the user's satiation with it (decaying
  by `satiation_decay` per step), which lowers that topic's appeal, and moves their interest in
  it by `interest_step * (watch share - 1/2)`: good picks grow interest, poor ones wear it down.
- **Choice.** Each step shows a slate of K videos; the user clicks at most one, a multinomial
  logit over the slate (true click logit + dynamics + log examination of the position) and a
  no-click option with logit `null_logit`.

So showing what is clicked most now (appealing, same-topic) shortens sessions: greedy click
maximisation is not optimal for the session's total watch time, the return.

The state carries the user's watch history (their last `history_len` clicks, oldest first, -1
padded), which is what policies see. Everything is deterministic from the world's seed,
`seed` and the JAX keys passed in, and vectorised over users (`jax.lax.scan` over steps).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.data import world as world_lib
from vidrec_jax.data import response

PAD = -1
State = dict  # user, history, hist_len, sat, interest, budget, alive, seen: arrays over users
# (params, state, key) -> (slates (B, K) video ids, the policy's probability of each slate
# video); params are the policy's parameters (a pytree, or None), traced, not baked in.
Policy = Callable[[object, State, jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class SimArgs:
  """The simulator's arguments (`config.rl.simulator`)."""

  slate_size: int
  session_steps: int
  history_len: int
  initial_history: int
  budget: float
  step_cost: float
  refund: float
  appeal_std: float
  appeal_quality_corr: float
  quality_watch: float
  satiation_step: float
  satiation_decay: float
  satiation_weight: float
  interest_step: float
  interest_max: float
  null_logit: float
  seed: int

  @classmethod
  def from_config(cls, section) -> "SimArgs":
    return cls(**typed_kwargs(cls, section, "rl.simulator", ()))


class Simulator:
  """The world's users and videos with the dynamics above; arrays live on device."""

  def __init__(self, world: world_lib.World, args: SimArgs):
    self.args, self.world = args, world
    c = world.config
    num_users, num_videos = c.num_users, len(world.videos)
    rng = np.random.default_rng([c.seed, args.seed])
    quality = rng.normal(size=num_videos)
    rho = args.appeal_quality_corr
    appeal = args.appeal_std * (rho * quality + np.sqrt(1 - rho ** 2) * rng.normal(size=num_videos))
    users, videos = np.meshgrid(np.arange(num_users), np.arange(num_videos), indexing="ij")
    affinity = world.affinity(users.ravel(), videos.ravel()).reshape(num_users, num_videos)
    static = world.oracle_logit(users.ravel(), videos.ravel()).reshape(num_users, num_videos)
    self.cold = np.array([v.cold for v in world.videos])
    self.num_topics = c.num_topics
    self.arrays = dict(
        affinity=jnp.asarray(affinity, jnp.float32),
        static_logit=jnp.asarray(static + appeal[None], jnp.float32),
        quality=jnp.asarray(quality, jnp.float32),
        topic=jnp.asarray([v.topic for v in world.videos], jnp.int32),
        duration=jnp.asarray(world.durations(), jnp.float32),
        examination=jnp.asarray(response.examination(np.arange(args.slate_size, dtype=np.float32),
                                                     c.position_bias_power), jnp.float32))
    self.quality, self.appeal = quality.astype(np.float32), appeal.astype(np.float32)
    self.initial_histories = self._organic_histories(rng, static + appeal[None])

  @property
  def num_users(self) -> int:
    return int(self.arrays["affinity"].shape[0])

  @property
  def num_videos(self) -> int:
    return int(self.arrays["affinity"].shape[1])

  def _organic_histories(self, rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """(U, history_len) each user's clicks before any logging: `initial_history` warm videos
    drawn without replacement in proportion to their click appeal (Gumbel top-k)."""
    a = self.args
    out = np.full((logits.shape[0], a.history_len), PAD, np.int64)
    g = np.where(self.cold[None], -np.inf, logits) + rng.gumbel(size=logits.shape)
    n = min(a.initial_history, a.history_len, int((~self.cold).sum()))
    out[:, :n] = np.argsort(-g, axis=1)[:, :n]
    return out

  def reset(self, users: np.ndarray, histories: np.ndarray) -> State:
    """Session-start state of `users` whose watch histories are `histories` (B, history_len)."""
    a, b = self.args, len(users)
    histories = jnp.asarray(histories, jnp.int32)
    return dict(user=jnp.asarray(users, jnp.int32), history=histories,
                hist_len=(histories != PAD).sum(1).astype(jnp.int32),
                sat=jnp.zeros((b, self.num_topics), jnp.float32),
                interest=jnp.zeros((b, self.num_topics), jnp.float32),
                budget=jnp.full((b,), a.budget, jnp.float32), alive=jnp.ones((b,), bool),
                seen=jnp.zeros((b, self.num_videos), bool))

  def step(self, state: State, slate: jax.Array, key: jax.Array) -> tuple[State, dict]:
    return _step(self.args, self.arrays, state, slate, key)

  def rollout(self, policy: Policy, state: State, key: jax.Array, params=None
              ) -> tuple[State, dict]:
    """One session of every user in `state` under `policy`: (final state, per-step outputs
    stacked (T, B, ...): slate, propensity (the policy's probability of each slate video),
    choice (slate index or -1), video (-1 without a click), reward (watch seconds), like,
    alive (the step happened), history (before the step))."""
    return _rollout(self.args, policy, self.arrays, params, state, key)


def _take(table: jax.Array, idx: jax.Array) -> jax.Array:
  """table (B, M)[b, idx[b, ...]]."""
  return jnp.take_along_axis(table, idx.reshape(idx.shape[0], -1), axis=1).reshape(idx.shape)


def dynamics(a: SimArgs, state: State, topics: jax.Array) -> jax.Array:
  """The state's shift of the click logit and affinity for videos of `topics` (B, ...)."""
  return _take(state["interest"], topics) - a.satiation_weight * _take(state["sat"], topics)


def _step(a: SimArgs, arr: dict, state: State, slate: jax.Array, key: jax.Array
          ) -> tuple[State, dict]:
  b, k = slate.shape
  k_choice, k_watch, k_like = jax.random.split(key, 3)
  user, alive = state["user"], state["alive"]
  logits = (_take(arr["static_logit"][user], slate) + dynamics(a, state, arr["topic"][slate])
            + jnp.log(arr["examination"][:k])[None])
  options = jnp.concatenate([jnp.full((b, 1), a.null_logit, jnp.float32), logits], axis=1)
  choice = jax.random.categorical(k_choice, options, axis=1) - 1  # -1: no click
  clicked = (choice >= 0) & alive
  video = jnp.take_along_axis(slate, jnp.maximum(choice, 0)[:, None], axis=1)[:, 0]
  topic = arr["topic"][video]
  affinity = arr["affinity"][user, video] + dynamics(a, state, topic[:, None])[:, 0]
  quality = arr["quality"][video]
  noise = response.WATCH_NOISE_STD * jax.random.normal(k_watch, (b,))
  share = response.watch_share(affinity + a.quality_watch * quality, noise, xp=jnp)
  watch = jnp.where(clicked, arr["duration"][video] * share, 0.0)
  like = clicked & (jax.random.uniform(k_like, (b,)) < response.like_probability(affinity,
                                                                                   xp=jnp))
  kept = a.refund * response.sigmoid(2.0 * quality, xp=jnp)
  budget = state["budget"] - jnp.where(alive, a.step_cost + watch * (1.0 - kept), 0.0)
  onehot = jax.nn.one_hot(topic, state["sat"].shape[1]) * clicked[:, None]
  sat = state["sat"] * a.satiation_decay + a.satiation_step * onehot
  interest = jnp.clip(state["interest"] + a.interest_step * (share - 0.5)[:, None] * onehot,
                      -a.interest_max, a.interest_max)
  hist, n = state["history"], state["hist_len"]
  length = hist.shape[1]
  full = n >= length
  shifted = jnp.where(full[:, None], jnp.roll(hist, -1, axis=1), hist)
  pos = jnp.minimum(n, length - 1)
  appended = shifted.at[jnp.arange(b), pos].set(video)
  history = jnp.where(clicked[:, None], appended, hist)
  seen = state["seen"].at[jnp.arange(b), video].max(clicked)
  new = dict(state, history=history, hist_len=jnp.where(clicked, jnp.minimum(n + 1, length), n),
             sat=sat, interest=interest, budget=budget, alive=alive & (budget > 0), seen=seen)
  out = dict(slate=slate, choice=jnp.where(clicked, choice, -1),
             video=jnp.where(clicked, video, -1), reward=watch, like=like, alive=alive,
             history=hist)
  return new, out


@functools.partial(jax.jit, static_argnums=(0, 1))
def _rollout(a: SimArgs, policy: Policy, arr: dict, params, state: State, key: jax.Array):
  def body(s, k):
    k_policy, k_step = jax.random.split(k)
    slate, propensity = policy(params, s, k_policy)
    s, out = _step(a, arr, s, slate, k_step)
    return s, dict(out, propensity=propensity)
  return jax.lax.scan(body, state, jax.random.split(key, a.session_steps))


def gumbel_top_k(key: jax.Array, logits: jax.Array, k: int) -> jax.Array:
  """K indices per row drawn without replacement with probabilities softmax(logits), in the
  order drawn (Plackett-Luce)."""
  return jax.lax.top_k(logits + jax.random.gumbel(key, logits.shape), k)[1]


def masked_logits(logits: jax.Array, state: State, allowed: jax.Array | None = None
                  ) -> jax.Array:
  """`logits` (B, N) with the videos a user already clicked this session (and any not
  `allowed`) at -inf: a slate never repeats a watched video."""
  bad = state["seen"] if allowed is None else state["seen"] | ~allowed[None]
  return jnp.where(bad, -jnp.inf, logits)


def session_returns(rewards: jax.Array, discount: float) -> jax.Array:
  """(T, B) rewards -> (T, B) discounted returns-to-go G_t = sum_k discount^k r_{t+k}."""
  def body(g, r):
    g = r + discount * g
    return g, g
  return jax.lax.scan(body, jnp.zeros_like(rewards[0]), rewards, reverse=True)[1]
