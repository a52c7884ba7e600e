"""`random`: K videos uniformly at random among those not clicked this session; not trained.
The floor every other policy is read against."""

from __future__ import annotations

from vidrec_jax.rl import evaluation as eval_lib
from vidrec_jax.rl.policies import POLICIES
from vidrec_jax.rl.policies import Env
from vidrec_jax.rl.policies import Policy


class RandomPolicy(Policy):
  """Uniform slates; evaluated without parameters."""

  def served(self, env: Env) -> eval_lib.Served:
    return eval_lib.random_policy(env.sim.num_videos, env.slate_size)


POLICIES.register("random", RandomPolicy())
