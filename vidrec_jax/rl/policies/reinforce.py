"""Policies trained by the `reinforce` trainer (rl/trainer.py): the softmax policy model over
the corpus, fitted to a seed's logged sessions with a REINFORCE correction (rl/losses.py).

  greedy               supervised  the click model, served greedily (its top K)
  ips_click            ips_click   the click model with capped importance weights (de-biased
                                   from the behaviour's exposure, no long-term credit), greedy
  reinforce            none        REINFORCE without correction, served as `rl.serving` says
  reinforce_offpolicy  standard    capped importance weights
  reinforce_topk       topk        capped importance weights and the top-K correction
"""

from __future__ import annotations

import dataclasses


from vidrec_jax.config_checks import check
from vidrec_jax.rl import evaluation as eval_lib
from vidrec_jax.rl import losses
from vidrec_jax.rl.policies import Env
from vidrec_jax.rl.policies import POLICIES
from vidrec_jax.rl.policies import Policy
from vidrec_jax.rl.trainer import RLContext
from vidrec_jax.rl.trainer import ReinforceTrainer
from vidrec_jax.run_spec import Section


@dataclasses.dataclass(frozen=True)
class ReinforcePolicy(Policy):
  """Trained with the registered `correction` (it sets `rl.correction` of its run); served by
  its top K when `greedy` (the click models, whatever `rl.serving` says), else as `rl.serving`
  says."""

  correction: str
  greedy: bool = False

  def check(self, rl: Section) -> None:
    check(self.correction in losses.CORRECTIONS, "rl.policies", tuple(rl.policies),
          f"a policy trains with the correction {self.correction!r}, which is not registered "
          f"(registered: {', '.join(losses.CORRECTIONS.names())})")

  def served(self, env: Env) -> eval_lib.Served:
    serving = "top_k" if self.greedy else env.run.rl.serving
    return eval_lib.model_policy(env.setup, env.slate_size, serving)

  def trainer(self, ctx: RLContext) -> ReinforceTrainer:
    run = dataclasses.replace(ctx.run, rl=ctx.run.rl.replace(correction=self.correction))
    return ReinforceTrainer(dataclasses.replace(ctx, run=run))


POLICIES.register("greedy", ReinforcePolicy("supervised", greedy=True))
POLICIES.register("ips_click", ReinforcePolicy("ips_click", greedy=True))
POLICIES.register("reinforce", ReinforcePolicy("none"))
POLICIES.register("reinforce_offpolicy", ReinforcePolicy("standard"))
POLICIES.register("reinforce_topk", ReinforcePolicy("topk"))
