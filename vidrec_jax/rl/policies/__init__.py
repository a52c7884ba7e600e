"""RL policy registry: the names `config.rl.policies` lists. A policy says how it acts in the
simulator (`served`: the slates it shows, and the scores the off-policy estimates weight by) and
how it is trained on a seed's logged sessions (`trainer`; None: it is evaluated as it is,
without parameters). The RL experiment (rl/experiment.py) runs every listed policy on every
seed alike: common random numbers in the simulator, the shared runner for the trained ones
(checkpoints, resume, the best checkpoint by simulated valid return), off-policy estimates on
the held-out logs, and `return/<name>`, `ips/<name>`, ... in WORKDIR/eval/rl.json.

  random                                      uniform.py    K videos uniformly at random
  greedy, ips_click                           reinforce.py  click models, served greedily
  reinforce, reinforce_offpolicy, reinforce_topk  reinforce.py  REINFORCE with a correction

Adding a policy: a `Policy` instance registered in `POLICIES`, in a module of this package (the
registry finds it by itself), of a test, or of your own package named in `config.imports`
(tests/extension_rl_test.py adds an untrained and a REINFORCE policy from a test file). A new
REINFORCE weighting is a `losses.Correction` registered in `losses.CORRECTIONS` and a
`ReinforcePolicy` naming it.
"""

from __future__ import annotations

import abc
import dataclasses


from vidrec_jax.registry import Registry
from vidrec_jax.rl import evaluation as eval_lib
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.trainer import RLContext
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.run_spec import Section
from vidrec_jax.train.state import Setup
from vidrec_jax.train.trainers import Trainer


@dataclasses.dataclass(frozen=True)
class Env:
  """What every policy of one experiment shares: the run's settings, the simulator and the
  policy model's setup on the mesh."""

  run: RunSpec
  sim: sim_lib.Simulator
  setup: Setup

  @property
  def slate_size(self) -> int:
    return self.sim.args.slate_size


class Policy(abc.ABC):
  """An RL policy of `config.rl.policies`."""

  def check(self, rl: Section) -> None:
    """Raises ConfigError on an `rl` section this policy cannot run with (called by
    rl/config.py after the section's own checks); none by default."""
    del rl

  @abc.abstractmethod
  def served(self, env: Env) -> eval_lib.Served:
    """How it acts: the simulator's policy and its scores (rl/evaluation.py). Called once per
    experiment, so one compiled rollout serves every seed."""

  def trainer(self, ctx: RLContext) -> Trainer | None:
    """The trainer that fits it to one seed's logs (`ctx.run` is that seed's), run by the
    shared runner and evaluated with `(params, catalog)`; None (the default): not trained,
    evaluated once with no parameters."""
    del ctx
    return None


POLICIES: Registry[Policy] = Registry("RL policy", package=__name__)
