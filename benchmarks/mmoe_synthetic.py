"""The synthetic task-correlation check of Ma et al., "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts" (KDD 2018, Section 4.2), on the registered trunks
(vidrec_jax/models/experts.py): shared_bottom, mmoe and ple, each with a linear tower per task.

  PYTHONPATH=. python benchmarks/mmoe_synthetic.py [--seeds=3 | --seed_list=3,4,5] \\
      [--steps=5000] [--batch=128] [--correlations=1.0,0.9,0.5] [--alpha_std=3] \\
      [--out=benchmarks/results/mmoe_synthetic.md]

Data, per seed (Section 4.2): d = 100; u1, u2 orthonormal, from the QR decomposition of a random
Gaussian (d, 2) matrix; w1 = c u1 and w2 = c (p u1 + sqrt(1 - p²) u2) with c = 1, so the
Pearson correlation of the two tasks' linear parts is p; x ~ N(0, I_d);
y_k = w_k·x + sum_{i=1..10} sin(alpha_i w_k·x + beta_i) + eps, eps ~ N(0, 0.01) (variance).
The paper gives no values for alpha_i, beta_i. Here alpha_i ~ N(0, alpha_std²) and
beta_i ~ N(0, 1), drawn once per seed and shared by both tasks (so only p separates them).
alpha_std = 3 by default: with alpha_std = 1 the sines are so smooth that every trunk ends
within about twice the noise floor, and the differences between trunks are mostly seed noise.
For one seed every correlation reuses the same u1, u2, alpha, beta, x and eps, and every model
sees the same data, initialisation seed and batch order: the comparisons are paired. A validation
set of 10,000 more examples is drawn after the training and test ones (so they are the same as
before it existed).

Training: MSE summed over the two tasks, Adam (--lr, cosine-decayed to zero over the run),
--steps steps of --batch examples drawn with replacement from 100,000 training examples (the
whole run is one jitted lax.scan); reported is the per-task MSE on the 10,000 validation and
the 10,000 test examples (the noise floor is 0.01). The trunks are sized to about the same
parameter count (the report lists them).

The gap at a correlation is the mean-over-tasks MSE of shared_bottom minus that of the better of
mmoe / ple, per seed.

Selection protocol (benchmarks/stats.py): mean ± sample SD (ddof 1) over seeds with n, the
valid figure beside the test one; the better of mmoe / ple is chosen by its valid mean, and a
trunk is ahead of shared_bottom (or a gap larger than another) only where a paired t-test over
the seeds gives p < 0.05, otherwise level within noise.
"""

from __future__ import annotations

import datetime
import functools
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags
from flax import nnx

from vidrec_jax.models import experts
from vidrec_jax.models import layers
import stats  # benchmarks/stats.py
import tables  # benchmarks/tables.py

_SEEDS = flags.DEFINE_integer("seeds", 3, "Number of seeds (0 .. seeds-1).")
_SEED_LIST = flags.DEFINE_list("seed_list", [], "The seeds themselves (e.g. 3,4,5: fresh data); "
                               "when given, --seeds is not used.")
_STEPS = flags.DEFINE_integer("steps", 5000, "Adam steps per run.")
_BATCH = flags.DEFINE_integer("batch", 128, "Examples per step.")
_LR = flags.DEFINE_float("lr", 3e-3, "Adam learning rate.")
_CORRELATIONS = flags.DEFINE_list("correlations", ["1.0", "0.9", "0.5"],
                                  "Task correlations p, in the order the table lists them.")
_ALPHA_STD = flags.DEFINE_float("alpha_std", 3.0, "Standard deviation of the sine frequencies.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/mmoe_synthetic.md", "Markdown table path.")

D, SINES, NOISE_VAR, TRAIN, TEST, VALID = 100, 10, 0.01, 100_000, 10_000, 10_000
TASKS = ("task1", "task2")
# Trunks of about 16.6k parameters each (towers included). MMoE: the paper's 8 experts of 16
# units (two layers here); PLE: 2 levels of 2 shared + 2 per task, 16 units; shared_bottom: one
# MLP of 87 units.
MODELS = {
    "shared_bottom": (dict(name="shared_bottom"), 87),
    "mmoe": (dict(name="mmoe", num_experts=8), 16),
    "ple": (dict(name="ple", shared_experts=2, task_experts=2, levels=2), 16),
}


def dataset(seed: int, p: float, alpha_std: float) -> tuple[np.ndarray, np.ndarray]:
  """(TRAIN + TEST + VALID, D) inputs and (TRAIN + TEST + VALID, 2) labels at task correlation p
  (train, test, valid in that order: the validation examples are drawn last, so the others are
  those of the script before it had them)."""
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(D, 2)))
  alpha, beta = rng.normal(0.0, alpha_std, size=SINES), rng.normal(size=SINES)
  x = rng.normal(size=(TRAIN + TEST, D))
  eps = rng.normal(0.0, np.sqrt(NOISE_VAR), size=(TRAIN + TEST, 2))
  x = np.concatenate([x, rng.normal(size=(VALID, D))])
  eps = np.concatenate([eps, rng.normal(0.0, np.sqrt(NOISE_VAR), size=(VALID, 2))])
  w = np.stack([u[:, 0], p * u[:, 0] + np.sqrt(1.0 - p * p) * u[:, 1]], axis=1)  # c = 1
  lin = x @ w                                                              # (N, 2)
  y = lin + np.sin(alpha * lin[..., None] + beta).sum(-1) + eps
  return x.astype(np.float32), y.astype(np.float32)


class Model(nnx.Module):
  """A registered trunk and a linear tower (hidden -> 1) per task."""

  def __init__(self, trunk_cfg: dict, hidden: int, rngs: nnx.Rngs):
    kw = dict(dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs)
    self.trunk = experts.build(trunk_cfg, D, hidden, TASKS, **kw)
    self.towers = nnx.Dict({t: layers.dense(hidden, 1, ("mlp", None), **kw) for t in TASKS})

  def __call__(self, x: jax.Array) -> jax.Array:
    hidden, _ = self.trunk(x)
    return jnp.concatenate([self.towers[t](hidden[t]) for t in TASKS], axis=-1)  # (N, 2)


def num_params(name: str) -> int:
  cfg, hidden = MODELS[name]
  state = nnx.state(nnx.eval_shape(lambda: Model(cfg, hidden, nnx.Rngs(0))), nnx.Param)
  return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(state))


@functools.cache
def runner(name: str, steps: int, batch: int, lr: float):
  """A jitted (seed, x, y) -> per-task MSE (2 splits: valid, test; 2 tasks) for model `name`:
  init, train, evaluate."""
  cfg, hidden = MODELS[name]
  graphdef = nnx.split(nnx.eval_shape(lambda: Model(cfg, hidden, nnx.Rngs(0))))[0]
  # Cosine decay to zero: the final parameters are not the noise of a constant step size.
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))

  def predict(params, x):
    return nnx.merge(graphdef, params)(x)

  def loss(params, x, y):
    return ((predict(params, x) - y) ** 2).mean(0).sum()

  @jax.jit
  def run(seed, x, y):
    key = jax.random.key(seed)
    params = nnx.split(Model(cfg, hidden, nnx.Rngs(jax.random.fold_in(key, 0))))[1]
    xtr, ytr = x[:TRAIN], y[:TRAIN]

    def step(carry, i):
      params, opt = carry
      idx = jax.random.randint(jax.random.fold_in(jax.random.fold_in(key, 1), i), (batch,), 0,
                               TRAIN)
      grads = jax.grad(loss)(params, xtr[idx], ytr[idx])
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))

    def mse(a, b):
      return ((predict(params, x[a:b]) - y[a:b]) ** 2).mean(0)

    return jnp.stack([mse(TRAIN + TEST, TRAIN + TEST + VALID), mse(TRAIN, TRAIN + TEST)])

  return run


def report(mse: dict, correlations: list[float], seeds: int, header: str) -> str:
  """mse[(model, p)] is (seeds, splits (tables.SPLITS: valid, test), tasks) -> the markdown
  tables and verdicts."""
  del seeds  # the arrays' first axis
  names, splits = list(MODELS), tables.SPLITS
  rows = []
  for p in correlations:
    for n in names:
      m = mse[(n, p)]
      rows.append([str(p), n, str(num_params(n))]
                  + [tables.cell(m[:, i, k], 4) for k in range(len(TASKS))
                     for i in range(len(splits))]
                  + [tables.cell(m[:, i].mean(1), 4) for i in range(len(splits))])
  lines = [header, "", "Per-task MSE (mean ± SD (ddof 1) over seeds; the noise floor is 0.010), "
           "the valid split beside the test split:", ""]
  lines += tables.markdown(["p", "model", "params"] + tables.split_header(TASKS + ("mean",)),
                           rows)
  pair = ("mmoe", "ple")
  rows, gaps = [], []
  for p in correlations:
    sb = mse[("shared_bottom", p)]
    # The better expert trunk by the valid mean-over-tasks MSE (lower is better).
    best = stats.best_by_valid({n: mse[(n, p)][:, 0].mean(1) for n in pair},
                               higher_is_better=False)
    gap = sb.mean(2) - mse[(best, p)].mean(2)  # (seeds, splits)
    gaps.append(gap[:, 1])
    wins = [tables.outcome(mse[(n, p)][:, 1, k], sb[:, 1, k], "paired", higher_is_better=False)
            for k in range(len(TASKS)) for n in pair]
    rows.append([str(p), best] + [tables.cell(gap[:, i], 4) for i in range(len(splits))]
                + [tables.judge(sb[:, 1].mean(1), mse[(best, p)][:, 1].mean(1),
                                ("shared_bottom", best), higher_is_better=False)[0]]
                + wins)
  lines += ["", "Gap = shared_bottom − best of mmoe/ple (mean over tasks; > 0 favours experts); "
            "the best chosen by its valid MSE; paired t-tests over seeds on the test split "
            "(p < 0.05; `level` = within noise):", ""]
  lines += tables.markdown(["p", "best by valid"] + tables.split_header(["gap"])
                           + ["test: shared_bottom vs best"]
                           + [f"{t}: {n} vs sb" for t in TASKS for n in pair], rows)
  order = np.argsort(correlations)[::-1]  # from the highest correlation to the lowest
  steps = [tables.judge(gaps[b], gaps[a], (f"gap at p={correlations[b]}",
                                          f"gap at p={correlations[a]}"))
           for a, b in zip(order[:-1], order[1:])]
  holds = len(order) > 1 and all(o == "ahead" for _, o in steps)
  lines += ["", "Expected: the gap in favour of MMoE/PLE grows as p falls -> "
            + ("holds" if holds else "not shown")
            + " (test gaps from high to low p: "
            + ", ".join(f"{correlations[i]}: {tables.cell(gaps[i], 4)}" for i in order)
            + "; each step a paired t-test over seeds):"]
  lines += [f"- {v}" for v, _ in steps]
  return "\n".join(lines) + "\n"


def describe(name: str) -> str:
  cfg, hidden = MODELS[name]
  return ", ".join([f"{k}={v}" for k, v in cfg.items() if k != "name"] + [f"hidden={hidden}"])


def _commit() -> str:
  try:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=False).stdout.strip()
  except OSError:
    out = ""
  return f"{out} + working tree" if out else "unknown commit"


def main(argv):
  del argv
  start = time.time()
  correlations = [float(c) for c in _CORRELATIONS.value]
  seed_list = ([int(s) for s in _SEED_LIST.value] if _SEED_LIST.value
               else list(range(_SEEDS.value)))
  seeds, steps, batch, lr = len(seed_list), _STEPS.value, _BATCH.value, _LR.value
  mse = {}
  for p in correlations:
    for n in MODELS:
      mse[(n, p)] = np.zeros((seeds, len(tables.SPLITS), len(TASKS)))
    for i, s in enumerate(seed_list):
      x, y = dataset(s, p, _ALPHA_STD.value)
      for n in MODELS:
        mse[(n, p)][i] = np.asarray(runner(n, steps, batch, lr)(s, x, y))
      print(f"p={p} seed={s} (valid, test): " + ", ".join(
          f"{n} {mse[(n, p)][i].round(4).tolist()}" for n in MODELS), flush=True)
  header = "\n\n".join([
      f"# benchmarks/mmoe_synthetic.py (Ma et al., KDD 2018, Sec. 4.2), {_commit()}, "
      f"{datetime.date.today()}",
      f"`{' '.join(['PYTHONPATH=. python'] + sys.argv)}`: seeds "
      f"{', '.join(str(s) for s in seed_list)}, {steps} Adam steps (lr {lr}, cosine decay) of "
      f"batch {batch}, {TRAIN} train / {VALID} valid / {TEST} test examples, "
      f"d={D}, alpha_std={_ALPHA_STD.value}; {time.time() - start:.0f} s wall on "
      f"{os.cpu_count()} CPU cores (shared with other jobs).",
      "Parameters (trunk + two linear towers): "
      + ", ".join(f"{n} {num_params(n)} ({describe(n)})" for n in MODELS) + "."])
  text = report(mse, correlations, seeds, header)
  print(text)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, "w") as f:
    f.write(text)


if __name__ == "__main__":
  app.run(main)
