"""The RL experiment (`--mode=rl`, or `train.trainer=reinforce`): for every seed of
`config.rl.seeds`, log sessions of the behaviour policy in the simulator, train each policy of
`config.rl.policies` on those logs with the shared runner (checkpoints, resume, preemption,
NaN halting, summaries, the mesh), evaluate every policy's long-term return in the simulator
and its off-policy estimates on held-out logs, then write WORKDIR/eval/rl.json (mean, spread and
per-seed values), a table, and a plot of return against training step.

  WORKDIR/seed_S/logs_train.npz, logs_test.npz      logged sessions (written once)
  WORKDIR/seed_S/<policy>/                          each policy's run (checkpoints, eval, ...)
  WORKDIR/eval/rl.json, rl_returns.png

Policies: random (not trained), greedy (the supervised click model: the softmax policy trained
to predict clicks, served greedily), ips_click (the click model with capped importance weights:
de-biased from the behaviour's exposure, no long-term credit), reinforce (no correction),
reinforce_offpolicy (capped importance weights), reinforce_topk (capped weights and the top-K
correction).
"""

from __future__ import annotations

import copy
import os

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from vidrec_jax import config_io
from vidrec_jax import files
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.data import world as world_lib
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.models import sequential
from vidrec_jax.rl import evaluation as eval_lib
from vidrec_jax.rl import logs as logs_lib
from vidrec_jax.rl import losses
from vidrec_jax.models import policy as model_lib
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.train import distributed
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import runner
from vidrec_jax.train.state import Setup
from vidrec_jax.train.trainers.reinforce import ACTIONS
from vidrec_jax.train.trainers.reinforce import ReinforceTrainer
from vidrec_jax.train.trainers.reinforce import RLContext

RANDOM = "random"
POLICIES = {"greedy": "supervised", "ips_click": "ips_click", "reinforce": "none",
            "reinforce_offpolicy": "standard", "reinforce_topk": "topk"}
# trained policy -> its correction (rl/losses.py)
CLICK_MODELS = ("greedy", "ips_click")  # served greedily (their top K) whatever rl.serving says
BEHAVIOURS = ("logged", "estimated")
# Off-policy estimates in rl.json: weighted as each policy is served (top K: indicator
# weights), and as its softmax drawing K with replacement (rl/estimators.py).
ESTIMATES = ("ips", "snips", "ips_softmax", "snips_softmax")


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on a bad `rl` section or a model that does not fit it."""
  check("rl" in c, "rl", None, "the RL experiment needs an `rl` section (configs/rl.py)")
  r = c.rl
  check(c.data.dataset.name == "synthetic", "data.dataset.name", c.data.dataset.name,
        "the RL simulator is built from the synthetic world: 'synthetic'")
  check(c.model.name == "policy", "model.name", c.model.name, "RL trains the 'policy' model")
  check(isinstance(r.seeds, (tuple, list)) and len(r.seeds) > 0
        and all(isinstance(s, int) for s in r.seeds), "rl.seeds", r.seeds,
        "a non-empty tuple of integers")
  check(all(p == RANDOM or p in POLICIES for p in r.policies) and len(r.policies) > 0,
        "rl.policies", r.policies, f"a tuple of: {RANDOM}, {', '.join(POLICIES)}")
  check(r.correction in losses.CORRECTIONS, "rl.correction", r.correction,
        f"allowed: {', '.join(losses.CORRECTIONS)}")
  check(r.behaviour in BEHAVIOURS, "rl.behaviour", r.behaviour,
        f"allowed: {', '.join(BEHAVIOURS)}")
  check(r.behaviour == "logged" or c.model.estimate_behaviour, "rl.behaviour", r.behaviour,
        "'estimated' needs model.estimate_behaviour=True (the behaviour head)")
  check(r.actions in ACTIONS, "rl.actions", r.actions, f"allowed: {', '.join(ACTIONS)}")
  check(r.serving in eval_lib.SERVING, "rl.serving", r.serving,
        f"allowed: {', '.join(eval_lib.SERVING)}")
  metrics = tuple(f"valid/{m}" for m in eval_lib.METRICS)
  check(c.train.best_metric in ("",) + metrics, "train.best_metric", c.train.best_metric,
        f"'' (off) or a simulated valid metric: {', '.join(metrics)}")
  check(isinstance(r.get("topk_k", 0), int) and r.get("topk_k", 0) >= 0, "rl.topk_k",
        r.get("topk_k"), "an integer >= 0 (0: the slate size)")
  check(r.weight_cap > 0, "rl.weight_cap", r.weight_cap, "must be > 0 (e.g. e^3 = 20.09)")
  check(0.0 <= r.discount <= 1.0, "rl.discount", r.discount, "must be in [0, 1]")
  check(r.behaviour_temperature > 0, "rl.behaviour_temperature", r.behaviour_temperature,
        "must be > 0")
  for f in ("log_sessions", "held_out_sessions", "eval_sessions"):
    positive_int(r[f], f"rl.{f}")
  a = sim_lib.SimArgs.from_config(r.simulator)
  for f in ("slate_size", "session_steps", "history_len"):
    positive_int(getattr(a, f), f"rl.simulator.{f}")
  check(-1.0 < a.appeal_quality_corr < 1.0, "rl.simulator.appeal_quality_corr",
        a.appeal_quality_corr, "must be in (-1, 1)")
  check(a.slate_size <= c.data.dataset.num_videos, "rl.simulator.slate_size", a.slate_size,
        f"must be <= data.dataset.num_videos={c.data.dataset.num_videos}")
  check(c.data.history.max_len == a.history_len, "data.history.max_len",
        c.data.history.max_len, f"must equal rl.simulator.history_len={a.history_len}")
  width = world_lib.factor_width(c.data.dataset.num_palettes)
  check(c.model.content_width == width, "model.content_width", c.model.content_width,
        f"must be the world's factor width {width} (num_palettes + 9)")


def _policy_config(config: ml_collections.ConfigDict, policy: str, seed: int
                   ) -> ml_collections.ConfigDict:
  c = copy.deepcopy(config)
  with c.unlocked():
    c.rl.correction = POLICIES[policy]
    c.seed = c.data.shuffle_seed = seed
  return c


def catalog_arrays(sim: sim_lib.Simulator, logs: logs_lib.Logs) -> dict[str, np.ndarray]:
  """Vocabulary rows (a video never clicked in the training logs gets the out-of-vocabulary
  row: cold-start videos among them) and content factors, row = video id."""
  n = sim.num_videos
  known = np.zeros(n, bool)
  known[logs.video[logs.clicked]] = True
  known[logs.history[logs.history >= 0]] = True
  return {sequential.ROW: np.where(known, np.arange(n), n).astype(np.int32),
          model_lib.FACTORS: sim.world.features.astype(np.float32)}


def _logs(path: str, make) -> logs_lib.Logs:
  if os.path.exists(path):
    return logs_lib.Logs.load(path)
  logs = make()
  if jax.process_index() == 0:
    with files.atomic_path(path) as tmp:
      logs.save(tmp)
  return logs


def _array(path: str, make) -> np.ndarray:
  if os.path.exists(path):
    return np.load(path)
  out = make()
  if jax.process_index() == 0:
    with files.atomic_path(path) as tmp:
      with open(tmp, "wb") as f:
        np.save(f, out)
  return out


class _Seed:
  """One seed's training and held-out logs (written once, read back on a rerun) and catalog."""

  def __init__(self, config, sim: sim_lib.Simulator, seed: int, directory: str):
    r = config.rl
    os.makedirs(directory, exist_ok=True)
    behaviour = logs_lib.behaviour_policy(sim, r.behaviour_temperature)
    key = jax.random.PRNGKey(seed)
    self.train = _logs(os.path.join(directory, "logs_train.npz"), lambda: logs_lib.collect(
        sim, behaviour, sim.initial_histories, r.log_sessions, r.discount,
        jax.random.fold_in(key, 1)))
    self.test = _logs(os.path.join(directory, "logs_test.npz"), lambda: logs_lib.collect(
        sim, behaviour, self.train.final_histories, r.held_out_sessions, r.discount,
        jax.random.fold_in(key, 2)))
    self.catalog = catalog_arrays(sim, self.train)
    # Exact P(video in the behaviour's slate) of the held-out slates: the denominators of
    # every policy's off-policy weights (written once; ~1 s per 2,000 logged steps).
    self.beta_inclusion = _array(
        os.path.join(directory, "logs_test_inclusion.npy"),
        lambda: logs_lib.behaviour_inclusion(sim, self.test, r.behaviour_temperature))
    logging.info("seed %d logs: %d steps (%.2f clicks per step, %.1f steps per session)", seed,
                 len(self.train), self.train.clicked.mean(), len(self.train) /
                 self.train.num_sessions)
    self.sim, self.seed, self.dir = sim, seed, directory


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) the experiment; returns what it writes to WORKDIR/eval/rl.json."""
  validate(config)
  config_io.check(workdir, config)
  distributed.host0_then_barrier("vidrec_rl_config", lambda: config_io.write(workdir, config))
  r = config.rl
  world = world_lib.World(synthetic.world_args(config.data.dataset))
  sim = sim_lib.Simulator(world, sim_lib.SimArgs.from_config(r.simulator))
  setup = Setup(config, 1, sim.num_videos, mesh_lib.make_mesh(config.mesh))
  k = sim.args.slate_size
  greedy = eval_lib.model_policy(setup, k)
  served = greedy if r.serving == "top_k" else eval_lib.model_policy(setup, k, r.serving)
  random_policy = eval_lib.random_policy(sim.num_videos, k)
  per_seed: dict[int, dict[str, dict]] = {}
  for seed in r.seeds:
    s = _Seed(config, sim, seed, os.path.join(workdir, f"seed_{seed}"))
    catalog = jax.tree.map(lambda x: jax.device_put(x, NamedSharding(
        setup.mesh, PartitionSpec())), s.catalog)
    per_seed[seed] = {}
    for policy in r.policies:
      pdir = os.path.join(s.dir, policy)
      if policy == RANDOM:
        ev = _evaluation(config, sim, s, random_policy)
        metrics = ev.evaluate(None)
        runner.write_results(pdir, metrics, ev, None, 0)
      else:
        ev = _evaluation(config, sim, s, greedy if policy in CLICK_MODELS else served, catalog)
        ctx = RLContext(_policy_config(config, policy, seed), setup, s.train, s.catalog)
        metrics = runner.run(ReinforceTrainer(ctx), ev, pdir)
        if "preempted_at_step" in metrics:
          return metrics
      logging.info("seed %d %s: test return %.3f", seed, policy, metrics["test/return"])
      per_seed[seed][policy] = metrics
  summary = summarise(per_seed, r.policies)
  if jax.process_index() == 0:
    out = os.path.join(workdir, "eval")
    os.makedirs(out, exist_ok=True)
    files.write_json(os.path.join(out, "rl.json"), summary)
    print(table(summary, r.policies), flush=True)
    plot_returns(workdir, r.seeds, r.policies, os.path.join(out, "rl_returns.png"))
    print(f"results written to {os.path.join(out, 'rl.json')}", flush=True)
  return summary


def _evaluation(config, sim, s: _Seed, served: eval_lib.Served, extra=None
                ) -> eval_lib.SimulatorEvaluation:
  """Common random numbers: every policy of a seed meets the same simulated luck."""
  r = config.rl
  return eval_lib.SimulatorEvaluation(sim, served, s.train.final_histories, s.test,
                                      s.beta_inclusion, r.eval_sessions,
                                      r.eval_seed + 1000 * s.seed, extra)


def summarise(per_seed: dict[int, dict[str, dict]], policies) -> dict:
  """`return/<policy>` (mean over seeds), `return/<policy>/std`, `.../seeds`, and the same for
  `valid_return` (the simulated valid return the checkpoint was chosen by), each of ESTIMATES, `clicks`, `steps` and the shown and clicked quality; `gain/<policy>` = mean
  return / greedy's mean return - 1; `same_order/<estimate>` (the estimates order the policies
  as the simulated returns do), `rank_correlation/<estimate>` (Spearman) and
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
  if "greedy" in policies:
    for p in policies:
      out[f"gain/{p}"] = out[f"return/{p}"] / out["return/greedy"] - 1.0
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


def plot_returns(workdir: str, seeds, policies, path: str) -> None:
  """Valid return against training step, one line per trained policy: each seed thin, their
  mean bold where every seed has the point (early stopping ends seeds at different steps);
  random as a horizontal line. Read from the runs' summaries; the final evaluation, written
  at train.steps, is left out (it is the best checkpoint's, not a step's)."""
  from vidrec_jax.reporting import events  # pylint: disable=g-import-not-at-top
  from vidrec_jax.reporting.plots import pyplot  # pylint: disable=g-import-not-at-top
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, p in enumerate(policies):
    metrics = [files.read_json(os.path.join(workdir, f"seed_{seed}", p, "eval", "metrics.json"))
               for seed in seeds]
    if p == RANDOM:
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
