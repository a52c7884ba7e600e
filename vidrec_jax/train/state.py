"""Train state, optimizer, and creation of a sharded state inside jit.

Pretrained parts (vidrec_jax/checkpoints/parts.py) are handled generically: each active part's
weights replace its random initialisation, and its parameters get the optimizer label of the
part's name (its own learning-rate factor) or 'frozen'.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from vidrec_jax.checkpoints import parts as parts_lib
from vidrec_jax.checkpoints.convert import path_str
from vidrec_jax.models import recommender
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.run_spec import Section
from vidrec_jax.run_spec import TrainSpec
from vidrec_jax.train import mesh as mesh_lib

DEFAULT, FROZEN = "default", "frozen"  # optimizer labels besides the pretrained parts' names


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict
  opt_state: Any
  rng: jax.Array


def learning_rate_schedule(t: TrainSpec) -> optax.Schedule:
  """Linear warmup to train.learning_rate, then cosine decay over the remaining steps."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=t.learning_rate, warmup_steps=t.warmup_steps,
      decay_steps=max(t.steps, t.warmup_steps + 1),
      end_value=t.learning_rate * t.end_learning_rate_factor)


def make_optimizer(t: TrainSpec, labels: dict | None = None,
                   lr_factors: dict[str, float] | None = None) -> optax.GradientTransformation:
  """Clipping, then AdamW with warmup + cosine. With `labels` (a params-shaped tree of 'default',
  'frozen' or a pretrained part's name), each part trains at its own learning rate (the
  schedule times `lr_factors[part]`) and frozen parameters get no update at all (not even
  weight decay), so they stay bit-identical."""
  clip = optax.clip_by_global_norm(t.grad_clip)
  sched = learning_rate_schedule(t)
  if labels is None:
    return optax.chain(clip, optax.adamw(sched, weight_decay=t.weight_decay))

  def scaled(factor):
    return optax.adamw(lambda step: factor * sched(step), weight_decay=t.weight_decay)

  transforms = {DEFAULT: optax.adamw(sched, weight_decay=t.weight_decay),
                FROZEN: optax.set_to_zero()}
  transforms.update({name: scaled(f) for name, f in (lr_factors or {}).items()})
  return optax.chain(clip, optax.multi_transform(transforms, labels))


def param_labels(abstract_params: dict, model_cfg: Section) -> dict | None:
  """'default', 'frozen' or a pretrained part's name per parameter; None for a model without
  pretrained parts (a plain optimizer then)."""
  flat = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(abstract_params)[0]]
  active = parts_lib.active(flat)
  if not active:
    return None

  def label(path, _):
    p = path_str(path)
    for name, part in active:
      if p.startswith(part.prefix):
        return name if part.trainable(p[len(part.prefix):], model_cfg) else FROZEN
    return DEFAULT
  return jax.tree_util.tree_map_with_path(label, abstract_params)


class Setup:
  """Everything static about a model on a mesh: graph, optimizer, abstract state, shardings."""

  def __init__(self, run: RunSpec, num_users: int, num_videos: int, mesh: jax.sharding.Mesh):
    self.mesh = mesh
    self._model_cfg = run.model  # the pretrained parts' weights follow from it (`init`)
    self.rules = tuple(tuple(r) for r in run.mesh.rules)
    self.num_users, self.num_videos = num_users, num_videos
    self.loss_weights = dict(run.train.loss_weights)
    self._build = functools.partial(recommender.build, run.model, num_users, num_videos)
    abstract_model = nnx.eval_shape(lambda: self._build(nnx.Rngs(0)))
    self.graphdef, abstract_params = nnx.split(abstract_model, nnx.Param)
    self.param_shardings = mesh_lib.param_shardings(abstract_params, mesh, self.rules)
    pure = abstract_params.to_pure_dict()
    self.parts = parts_lib.active(path_str(p) for p, _ in
                                  jax.tree_util.tree_flatten_with_path(pure)[0])
    self.labels = param_labels(pure, run.model)
    self.tx = make_optimizer(run.train, self.labels,
                             {name: run.train.learning_rate_factor(part.lr_factor)
                              for name, part in self.parts})
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
    """A fresh state, born sharded: jit with out_shardings, never whole on one device. The
    pretrained parts' weights then replace their random initialisation, shard by shard."""
    state = jax.jit(self._init, out_shardings=self.state_shardings)(jax.random.PRNGKey(seed))
    for _, part in self.parts:
      state = self._load(state, part.prefix, part.weights(self._model_cfg))
    return state

  def _load(self, state: TrainState, prefix: str, arrays: dict) -> TrainState:
    """Replaces the parameters under `prefix` by pretrained `arrays` (keyed by the rest of the
    path), each put straight into its sharding."""
    def put(path, x, sharding):
      key = path_str(path)
      if not key.startswith(prefix):
        return x
      value = arrays[key[len(prefix):]].astype(x.dtype)
      return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])
    return state.replace(params=jax.tree_util.tree_map_with_path(
        put, state.params, self.param_shardings))

  def stop_frozen(self, params: dict) -> dict:
    """Frozen parameters as constants of the loss: no gradient flows into them at all, so a
    frozen backbone costs a forward pass only."""
    if self.labels is None:
      return params
    return jax.tree.map(lambda p, lab: jax.lax.stop_gradient(p) if lab == FROZEN else p,
                        params, self.labels)

  def model(self, params: dict):
    return nnx.merge(self.graphdef, nnx.State(params))
