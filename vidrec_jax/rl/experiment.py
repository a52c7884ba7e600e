"""The RL experiment (`--mode=rl`, or `train.trainer=reinforce`): for every seed of
`config.rl.seeds`, log sessions of the behaviour policy in the simulator, then run each policy
of `config.rl.policies`, looked up by name in the policy registry (rl/policies/): a trained one
with the shared runner (checkpoints, resume, preemption, NaN halting, summaries, the mesh), an
untrained one evaluated as it is; every policy's long-term return in the simulator and its
off-policy estimates on held-out logs go to WORKDIR/eval/rl.json (mean, spread and per-seed
values), with a table and a plot of return against training step (reporting/rl.py).

  WORKDIR/seed_S/logs_train.npz, logs_test.npz      logged sessions (written once)
  WORKDIR/seed_S/<policy>/                          each policy's run (checkpoints, eval, ...)
  WORKDIR/eval/rl.json, rl_returns.png

The config checks are in rl/config.py; vidrec_jax/experiment.py records the config and calls
`run` with the resolved settings.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, TypeVar

import jax
import numpy as np
from absl import logging

from vidrec_jax import files
from vidrec_jax.data import world as world_lib
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.models import policy as model_lib
from vidrec_jax.models import sequential
from vidrec_jax.reporting import rl as report
from vidrec_jax.rl import evaluation as eval_lib
from vidrec_jax.rl import logs as logs_lib
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.policies import Env
from vidrec_jax.rl.policies import POLICIES
from vidrec_jax.rl.trainer import RLContext
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import runner
from vidrec_jax.train.state import Setup

__all__ = ["catalog_arrays", "run"]

T = TypeVar("T")


def catalog_arrays(sim: sim_lib.Simulator, logs: logs_lib.Logs) -> dict[str, np.ndarray]:
  """Vocabulary rows (a video never clicked in the training logs gets the out-of-vocabulary
  row: cold-start videos among them) and content factors, row = video id."""
  n = sim.num_videos
  known = np.zeros(n, bool)
  known[logs.video[logs.clicked]] = True
  known[logs.history[logs.history >= 0]] = True
  return {sequential.ROW: np.where(known, np.arange(n), n).astype(np.int32),
          model_lib.FACTORS: sim.world.features.astype(np.float32)}


def _written_once(path: str, make: Callable[[], T], save: Callable[[T, str], None],
                  load: Callable[[str], T]) -> T:
  """What a previous run wrote to `path`, read back; else `make()`, written by host 0."""
  if os.path.exists(path):
    return load(path)
  value = make()
  if jax.process_index() == 0:
    with files.atomic_path(path) as tmp:
      save(value, tmp)
  return value


class _Seed:
  """One seed's training and held-out logs (written once, read back on a rerun) and catalog."""

  def __init__(self, run: RunSpec, sim: sim_lib.Simulator, seed: int, directory: str):
    r = run.rl
    os.makedirs(directory, exist_ok=True)
    behaviour = logs_lib.behaviour_policy(sim, r.behaviour_temperature)
    key = jax.random.PRNGKey(seed)

    def logs(name: str, make: Callable[[], logs_lib.Logs]) -> logs_lib.Logs:
      return _written_once(os.path.join(directory, name), make, logs_lib.Logs.save,
                           logs_lib.Logs.load)
    self.train = logs("logs_train.npz", lambda: logs_lib.collect(
        sim, behaviour, sim.initial_histories, r.log_sessions, r.discount,
        jax.random.fold_in(key, 1)))
    self.test = logs("logs_test.npz", lambda: logs_lib.collect(
        sim, behaviour, self.train.final_histories, r.held_out_sessions, r.discount,
        jax.random.fold_in(key, 2)))
    self.catalog = catalog_arrays(sim, self.train)
    # Exact P(video in the behaviour's slate) of the held-out slates: the denominators of
    # every policy's off-policy weights (written once; ~1 s per 2,000 logged steps).
    self.beta_inclusion = _written_once(
        os.path.join(directory, "logs_test_inclusion.npy"),
        lambda: logs_lib.behaviour_inclusion(sim, self.test, r.behaviour_temperature),
        lambda a, path: np.save(path, a), np.load)
    logging.info("seed %d logs: %d steps (%.2f clicks per step, %.1f steps per session)", seed,
                 len(self.train), self.train.clicked.mean(), len(self.train) /
                 self.train.num_sessions)
    self.sim, self.seed, self.dir = sim, seed, directory

  def run(self, run: RunSpec) -> RunSpec:
    """The experiment's settings with this seed as the run's seed and data shuffle seed."""
    return dataclasses.replace(run, seed=self.seed,
                               data=dataclasses.replace(run.data, shuffle_seed=self.seed))


def run(spec: RunSpec, workdir: str) -> dict:
  """Runs (or resumes) the experiment of `spec` (validated by rl/config.py, its config recorded
  by the caller); returns what it writes to WORKDIR/eval/rl.json."""
  r = spec.rl
  world = world_lib.World(synthetic.world_args(spec.data.dataset))
  sim = sim_lib.Simulator(world, sim_lib.SimArgs.from_config(r.simulator))
  setup = Setup(spec, 1, sim.num_videos, mesh_lib.make_mesh(spec.mesh))
  env = Env(spec, sim, setup)
  policies = {name: POLICIES.get(name) for name in r.policies}
  served = {name: p.served(env) for name, p in policies.items()}
  untrained = set()
  per_seed: dict[int, dict[str, dict]] = {}
  for seed in r.seeds:
    s = _Seed(spec, sim, seed, os.path.join(workdir, f"seed_{seed}"))
    catalog = mesh_lib.replicate(s.catalog, setup.mesh)
    per_seed[seed] = {}
    for name, policy in policies.items():
      pdir = os.path.join(s.dir, name)
      trainer = policy.trainer(RLContext(s.run(spec), setup, s.train, s.catalog))
      if trainer is None:
        untrained.add(name)
        ev = _evaluation(spec, sim, s, served[name])
        metrics = ev.evaluate(None)
        runner.write_results(pdir, metrics, ev, None, 0)
      else:
        metrics = runner.run(trainer, _evaluation(spec, sim, s, served[name], catalog), pdir)
        if "preempted_at_step" in metrics:
          return metrics
      logging.info("seed %d %s: test return %.3f", seed, name, metrics["test/return"])
      per_seed[seed][name] = metrics
  summary = report.summarise(per_seed, r.policies)
  if jax.process_index() == 0:
    out = os.path.join(workdir, "eval")
    os.makedirs(out, exist_ok=True)
    files.write_json(os.path.join(out, "rl.json"), summary)
    print(report.table(summary, r.policies), flush=True)
    report.plot_returns(workdir, r.seeds, r.policies, os.path.join(out, "rl_returns.png"),
                        untrained)
    print(f"results written to {os.path.join(out, 'rl.json')}", flush=True)
  return summary


def _evaluation(spec: RunSpec, sim, s: _Seed, served: eval_lib.Served, extra=None
                ) -> eval_lib.SimulatorEvaluation:
  """Common random numbers: every policy of a seed meets the same simulated luck."""
  r = spec.rl
  return eval_lib.SimulatorEvaluation(sim, served, s.train.final_histories, s.test,
                                      s.beta_inclusion, r.eval_sessions,
                                      r.eval_seed + 1000 * s.seed, extra)
