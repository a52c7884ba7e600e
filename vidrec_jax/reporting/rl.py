"""What the RL experiment reports (rl/experiment.py): the statistics over seeds written to
WORKDIR/eval/rl.json, the table it prints, and the plot of valid return against training step
(WORKDIR/eval/rl_returns.png)."""

from __future__ import annotations

import os

import numpy as np

from vidrec_jax import files
from vidrec_jax.reporting import events
from vidrec_jax.reporting.plots import pyplot

# Off-policy estimates in rl.json: weighted as each policy is served (top K: indicator
# weights), and as its softmax drawing K with replacement (rl/estimators.py).
ESTIMATES = ("ips", "snips", "ips_softmax", "snips_softmax")
GAIN_BASELINE = "greedy"  # `gain/<policy>` is the return against this policy's


def summarise(per_seed: dict[int, dict[str, dict]], policies) -> dict:
  """`return/<policy>` (mean over seeds), `return/<policy>/std`, `.../seeds`, and the same for
  `valid_return` (the simulated valid return the checkpoint was chosen by), each of ESTIMATES,
  `clicks`, `steps` and the shown and clicked quality; `gain/<policy>` = mean return /
  greedy's mean return - 1; `same_order/<estimate>` (the estimates order the policies as the
  simulated returns do), `rank_correlation/<estimate>` (Spearman) and
  `separated_order/<estimate>`: the estimates order every pair of policies that the simulator
  separates, i.e. one beats the other on every seed (seeds share the simulated luck, so the
  per-seed difference is paired); `separated_pairs` counts those pairs. Two policies tied
  within the seed spread have no order for an estimate to get right."""
  seeds = sorted(per_seed)
  out: dict = {"seeds": seeds, "policies": list(policies)}
  for p in policies:
    for name, key in (("return", "test/return"), ("valid_return", "valid/return"),
                      *((e, f"test/{e}") for e in ESTIMATES),
                      ("clicks", "test/clicks"), ("steps", "test/steps"),
                      ("shown_quality", "test/shown_quality"),
                      ("clicked_quality", "test/clicked_quality")):
      vals = [per_seed[s][p][key] for s in seeds]
      out[f"{name}/{p}"] = float(np.mean(vals))
      out[f"{name}/{p}/std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
      out[f"{name}/{p}/seeds"] = [float(v) for v in vals]
  if GAIN_BASELINE in policies:
    for p in policies:
      out[f"gain/{p}"] = out[f"return/{p}"] / out[f"return/{GAIN_BASELINE}"] - 1.0
  # Do the off-policy estimates order the policies as the simulator's truth does?
  truth = np.array([out[f"return/{p}"] for p in policies])
  for est in ESTIMATES:
    vals = np.array([out[f"{est}/{p}"] for p in policies])
    out[f"same_order/{est}"] = bool((np.argsort(vals) == np.argsort(truth)).all())
    out[f"rank_correlation/{est}"] = (float(np.corrcoef(_ranks(vals), _ranks(truth))[0, 1])
                                      if len(policies) > 1 else 1.0)
  pairs = separated_pairs({p: out[f"return/{p}/seeds"] for p in policies})
  out["separated_pairs"] = len(pairs)
  for est in ESTIMATES:
    out[f"separated_order/{est}"] = all(out[f"{est}/{hi}"] > out[f"{est}/{lo}"]
                                        for hi, lo in pairs)
  return out


def separated_pairs(returns: dict[str, list[float]]) -> list[tuple[str, str]]:
  """(better, worse) for every pair of policies where one has the higher return on every
  seed."""
  names = list(returns)
  out = []
  for i, p in enumerate(names):
    for q in names[i + 1:]:
      d = np.asarray(returns[p]) - np.asarray(returns[q])
      if (d > 0).all():
        out.append((p, q))
      elif (d < 0).all():
        out.append((q, p))
  return out


def _ranks(x: np.ndarray) -> np.ndarray:
  return np.argsort(np.argsort(x)).astype(np.float64)


def table(summary: dict, policies) -> str:
  """One row per policy (mean ± SD over seeds, gain against greedy), then whether each
  estimate orders the policies as the simulator does."""
  cols = ("return", "clicks", "steps") + ESTIMATES
  lines = ["policy".ljust(22) + "".join(c.rjust(18) for c in cols) + "gain vs greedy".rjust(16)]
  for p in policies:
    cells = "".join(f"{summary[f'{c}/{p}']:10.3f} ± {summary[f'{c}/{p}/std']:5.3f}"
                    for c in cols)
    gain = summary.get(f"gain/{p}")
    lines.append(p.ljust(22) + cells + (f"{100 * gain:+15.1f}%" if gain is not None else ""))
  for est in ESTIMATES:
    lines.append(f"{est} orders the policies as the simulator: "
                 f"{'yes' if summary[f'same_order/{est}'] else 'no'} (Spearman "
                 f"{summary[f'rank_correlation/{est}']:.2f}); the "
                 f"{summary['separated_pairs']} pairs one policy leads on every seed: "
                 f"{'yes' if summary[f'separated_order/{est}'] else 'no'}")
  return "\n".join(lines)


def plot_returns(workdir: str, seeds, policies, path: str, untrained=()) -> None:
  """Valid return against training step, one line per trained policy: each seed thin, their
  mean bold where every seed has the point (early stopping ends seeds at different steps);
  each policy of `untrained` (random) as a horizontal line. Read from the runs' summaries; the
  final evaluation, written at train.steps, is left out (it is the best checkpoint's, not a
  step's)."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, p in enumerate(policies):
    metrics = [files.read_json(os.path.join(workdir, f"seed_{seed}", p, "eval", "metrics.json"))
               for seed in seeds]
    if p in untrained:
      ax.axhline(np.mean([m["valid/return"] for m in metrics]), color="gray", ls="--", label=p)
      continue
    color = f"C{i}"
    curves = []
    for seed, m in zip(seeds, metrics):
      last = m.get("train/last_step", np.inf)
      points = [(s, v) for s, v in events.read_scalars(
          os.path.join(workdir, f"seed_{seed}", p)).get("valid/return", []) if s <= last]
      curves.append(dict(points))
      if points:
        ax.plot(*zip(*points), color=color, lw=0.8, alpha=0.35)
    common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    if common:
      ax.plot(common, [np.mean([c[s] for c in curves]) for s in common], color=color, lw=2,
              marker="o", ms=3, label=p)
  ax.set_xlabel("training step")
  ax.set_ylabel("simulated return (watch seconds per session)")
  ax.set_title(f"valid return; seeds {', '.join(map(str, seeds))} (thin) and their mean")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
