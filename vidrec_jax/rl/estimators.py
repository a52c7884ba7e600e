"""Off-policy value estimates of a slate policy from logged slates, and the slate-inclusion
probabilities they weight by.

A logged step shows a slate S of K videos drawn by the behaviour policy beta; the user clicks
at most one and the clicked video earns its watch time. With the item-level decomposition of
Chen et al. (the value of a slate is the sum of its videos' rewards), a target policy's value
per session is estimated from every logged slate item j with the weight

  w_j = P_target(j in slate | s) / P_beta(j in slate | s)

  IPS   = sum_j w_j r_j / sessions
  SNIPS = sum_j w_j r_j / sum_j w_j * (slate items logged) / sessions

where r_j is j's reward (zero for a shown video that was not clicked). SNIPS normalises over
every logged slate item, clicked or not: E_beta[sum_{j in S} w_j] = K when the target shows
only videos beta can show, so the mean weight is one in expectation; normalising over the
clicked items alone (an earlier version) divides by a sum that depends on the click rates and
is biased (on a 3-arm bandit with truth 0.630 it gave 1.55).

The inclusion probabilities are those of the slates actually drawn:
- beta draws K videos without replacement from its softmax (Gumbel top-K, Plackett-Luce):
  `slate_inclusion` computes P(j in S) exactly (an integral over exponential races, below);
- a target served greedily (its top K, what the simulator serves) has indicator weights;
- a softmax target drawing K with replacement includes j with probability 1 - (1 - pi_j)^K;
- uniform random slates of K among N candidates include each with probability K / N.

The decomposition ignores that a click on one video depends on the rest of the slate (the
simulator's users pick at most one by a multinomial logit): an estimator error that no weight
removes, which is why the simulator, not these estimates, gives the truth.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SERVINGS = ("top_k", "sample", "sample_replace", "uniform")
# Exponential-race integral: trapezoid rule in log time; exact to ~1e-6 relative at this step
# (tests/rl/estimators_test.py checks it against enumeration of every ordered slate).
_LOG_STEP = 0.2
_LOG_T_MIN = -16.0  # contributes < e^-16 relative to any inclusion probability
_TAIL = 40.0  # beyond 40 / rate an exponential clock has rung with probability 1 - e^-40


def slate_inclusion(logits: np.ndarray, slate: np.ndarray, batch: int = 256) -> np.ndarray:
  """Exact P(j in S) for each slate video j when S is K draws without replacement from
  softmax(logits) (Gumbel top-K / Plackett-Luce).

  Draws without replacement in proportion to p are the order in which independent exponential
  clocks of rates p ring, so j is in the first K iff fewer than K other clocks ring before j's:

    P(j in S) = int_0^inf p_j e^{-p_j t} P(#{i != j: T_i < t} <= K - 1) dt,

  where the count is Poisson-binomial with probabilities 1 - e^{-p_i t}: a dynamic programme
  over the videos for counts 0..K-1 at every quadrature time.

  Args:
    logits: (B, N) float; -inf marks a video that cannot be drawn.
    slate: (B, K) distinct candidate indices.
    batch: rows computed at once.

  Returns:
    (B, K) float64 inclusion probabilities.
  """
  logits = np.asarray(logits, np.float64)
  slate = np.asarray(slate)
  if slate.ndim != 2 or logits.ndim != 2 or len(slate) != len(logits):
    raise ValueError(f"slate_inclusion needs logits (B, N) and slate (B, K); got "
                     f"{logits.shape} and {slate.shape}")
  out = np.zeros(slate.shape, np.float64)
  for lo in range(0, len(slate), batch):
    lg, sl = logits[lo:lo + batch], slate[lo:lo + batch]
    p = np.exp(lg - lg.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p_slate = np.take_along_axis(p, sl, 1)
    if (p_slate <= 0).any():
      raise ValueError("a slate video has zero probability under the policy (logit -inf)")
    rest = p.copy()
    np.put_along_axis(rest, sl, 0.0, 1)
    k = sl.shape[1]
    kth = -np.sort(-p, 1)[:, k] if p.shape[1] > k else np.zeros(len(p))
    t_max = _TAIL / np.maximum(kth, p_slate.min(1))
    n_t = int(np.ceil((np.log(t_max.max()) - _LOG_T_MIN) / _LOG_STEP)) + 1
    n_t = -(-n_t // 32) * 32  # a few grid lengths, so a few compilations
    log_t = _LOG_T_MIN + _LOG_STEP * np.arange(n_t)
    out[lo:lo + batch] = np.asarray(_inclusion(
        jnp.asarray(rest, jnp.float32), jnp.asarray(p_slate, jnp.float32),
        jnp.asarray(log_t, jnp.float32)), np.float64)
  return out


def _count_step(dist: jax.Array, q: jax.Array) -> jax.Array:
  """Adds one Bernoulli(q) to a count distribution truncated at K - 1: dist (B, T, K)."""
  shifted = jnp.concatenate([jnp.zeros_like(dist[..., :1]), dist[..., :-1]], axis=-1)
  return dist * (1.0 - q[..., None]) + shifted * q[..., None]


@jax.jit
def _inclusion(rest: jax.Array, p_slate: jax.Array, log_t: jax.Array) -> jax.Array:
  b, k = p_slate.shape
  t = jnp.exp(log_t)

  def ring(p):  # P(a clock of rate p has rung by time t): (B,) -> (B, T)
    return -jnp.expm1(-p[:, None] * t[None, :])

  def body(dist, p_i):
    return _count_step(dist, ring(p_i)), None

  start = jnp.zeros((b, t.shape[0], k), jnp.float32).at[..., 0].set(1.0)
  others, _ = jax.lax.scan(body, start, rest.T)  # every video outside the slate
  cols = []
  for j in range(k):
    dist = others
    for i in range(k):
      if i != j:
        dist = _count_step(dist, ring(p_slate[:, i]))
    pj = p_slate[:, j, None]
    f = pj * t[None, :] * jnp.exp(-pj * t[None, :]) * dist.sum(-1)  # integrand in d log t
    cols.append(jnp.trapezoid(f, log_t, axis=1))
  return jnp.stack(cols, axis=1)


def target_inclusion(serving: str, logits: np.ndarray, slate: np.ndarray, k: int
                     ) -> np.ndarray:
  """P(j in the target's slate) for each logged slate video j (B, K) of a target served as
  `serving` (SERVINGS) from `logits` (B, N), -inf where it cannot show a video."""
  logits = np.asarray(logits, np.float64)
  at = np.take_along_axis(logits, slate, 1)
  if serving == "top_k":
    kth = -np.sort(-logits, 1)[:, k - 1]
    return ((at >= kth[:, None]) & np.isfinite(at)).astype(np.float64)
  if serving == "uniform":
    n = np.isfinite(logits).sum(1, keepdims=True)
    return np.where(np.isfinite(at), np.minimum(k / np.maximum(n, 1), 1.0), 0.0)
  if serving == "sample_replace":
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return 1.0 - (1.0 - np.take_along_axis(p, slate, 1)) ** k
  if serving == "sample":
    return slate_inclusion(logits, slate)
  raise ValueError(f"unknown serving {serving!r}; allowed: {', '.join(SERVINGS)}")


def off_policy_values(target: np.ndarray, behaviour: np.ndarray, reward: np.ndarray,
                      num_sessions: int) -> dict[str, float]:
  """IPS and SNIPS per session from every logged slate item (module docstring).

  Args:
    target: (n, K) P(item in the target's slate) at each logged step.
    behaviour: (n, K) P(item in the behaviour's slate), > 0 for logged items.
    reward: (n, K) each item's reward (0 where not clicked).
    num_sessions: the logged sessions the rows come from.

  Returns:
    ips, snips, their standard errors over sessions (`ips_se`, `snips_se`: rows are treated
    as independent, a lower bound where a session's steps correlate), the largest and the
    mean weight (`weight_max`, `weight_mean`; the mean is ~1 when the target shows only
    videos the behaviour could show).
  """
  w = np.asarray(target, np.float64) / np.maximum(np.asarray(behaviour, np.float64), 1e-300)
  r = np.asarray(reward, np.float64)
  if w.shape != r.shape:
    raise ValueError(f"target {w.shape} and reward {r.shape} must have one shape (n, K)")
  n_rows = max(len(w), 1)
  per_row = (w * r).sum(1)
  w_row = w.sum(1)
  items = w.size
  ips = float(per_row.sum() / num_sessions)
  mean_w = float(w.mean()) if w.size else 0.0
  snips = float(per_row.sum() / max(w.sum(), 1e-300) * items / num_sessions)
  scale = n_rows / num_sessions  # rows per session
  ips_se = float(per_row.std(ddof=1) / np.sqrt(n_rows) * scale) if n_rows > 1 else 0.0
  # Delta method for the ratio sum(w r) / sum(w): residuals w r - ratio * w, per row.
  ratio = per_row.sum() / max(w.sum(), 1e-300)
  resid = (per_row - ratio * w_row) / max(w_row.mean(), 1e-300) * w.shape[1]
  snips_se = float(resid.std(ddof=1) / np.sqrt(n_rows) * scale) if n_rows > 1 else 0.0
  return {"ips": ips, "snips": snips, "ips_se": ips_se, "snips_se": snips_se,
          "weight_max": float(w.max(initial=0.0)), "weight_mean": mean_w}

