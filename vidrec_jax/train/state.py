"""Train state, optimizer, and creation of a sharded state inside jit."""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from vidrec_jax.models import recommender
from vidrec_jax.train import mesh as mesh_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  opt_state: Any
  rng: jax.Array


def learning_rate_schedule(t: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup to train.learning_rate, then cosine decay over the remaining steps."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=t.learning_rate, warmup_steps=t.warmup_steps,
      decay_steps=max(t.steps, t.warmup_steps + 1),
      end_value=t.learning_rate * t.end_learning_rate_factor)


def make_optimizer(t: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.chain(optax.clip_by_global_norm(t.grad_clip),
                     optax.adamw(learning_rate_schedule(t), weight_decay=t.weight_decay))


class Setup:
  """Everything static about a model on a mesh: graph, optimizer, abstract state, shardings."""

  def __init__(self, config: ml_collections.ConfigDict, num_users: int, num_videos: int,
               mesh: jax.sharding.Mesh):
    self.config, self.mesh = config, mesh
    self.rules = tuple(tuple(r) for r in config.mesh.rules)
    self.num_users, self.num_videos = num_users, num_videos
    self._build = functools.partial(recommender.build, config.model, num_users, num_videos)
    abstract_model = nnx.eval_shape(lambda: self._build(nnx.Rngs(0)))
    self.graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
    self.param_shardings = mesh_lib.param_shardings(abstract_params, mesh, self.rules)
    self.tx = make_optimizer(config.train)
    abstract = jax.eval_shape(self._init, jax.random.PRNGKey(0))
    repl = NamedSharding(mesh, PartitionSpec())
    self.state_shardings = TrainState(
        step=repl, params=self.param_shardings,
        opt_state=mesh_lib.opt_state_shardings(self.tx, abstract.opt_state,
                                               self.param_shardings, mesh),
        rng=repl)
    self.abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract,
        self.state_shardings)

  def _init(self, key: jax.Array) -> TrainState:
    init_key, rng = jax.random.split(key)
    model = self._build(nnx.Rngs(init_key))
    params = nnx.split(model, nnx.Param)[1].to_pure_dict()
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.tx.init(params), rng=rng)

  def init(self, seed: int) -> TrainState:
    """A fresh state, born sharded: jit with out_shardings, never whole on one device."""
    return jax.jit(self._init, out_shardings=self.state_shardings)(jax.random.PRNGKey(seed))

  def model(self, params: dict):
    return nnx.merge(self.graphdef, nnx.State(params))
