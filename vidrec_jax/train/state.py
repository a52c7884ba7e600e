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

from vidrec_jax.models import backbone_encoder
from vidrec_jax.models import backbones
from vidrec_jax.models import convert
from vidrec_jax.models import recommender
from vidrec_jax.models import text as text_lib
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


def make_optimizer(t: ml_collections.ConfigDict, labels: dict | None = None
                   ) -> optax.GradientTransformation:
  """Clipping, then AdamW with warmup + cosine. With `labels` (a params-shaped tree of
  'default' / 'backbone' / 'text' / 'frozen'), the backbone and the text encoder get their own
  learning rates (`train.backbone_learning_rate_factor`, `train.text_learning_rate_factor`
  times the schedule) and frozen parameters get no update at all (not even weight decay), so
  they stay bit-identical."""
  clip = optax.clip_by_global_norm(t.grad_clip)
  sched = learning_rate_schedule(t)
  if labels is None:
    return optax.chain(clip, optax.adamw(sched, weight_decay=t.weight_decay))
  def scaled(factor):
    return optax.adamw(lambda step: factor * sched(step), weight_decay=t.weight_decay)

  return optax.chain(clip, optax.multi_transform({
      "default": optax.adamw(sched, weight_decay=t.weight_decay),
      "backbone": scaled(t.get("backbone_learning_rate_factor", 1.0)),
      "text": scaled(t.get("text_learning_rate_factor", 1.0)),
      "frozen": optax.set_to_zero()}, labels))


def param_labels(abstract_params: dict, model_cfg: ml_collections.ConfigDict) -> dict | None:
  """'default' / 'backbone' / 'text' / 'frozen' per parameter, or None for a model without a
  pretrained backbone or text encoder."""
  has_text = "text_encoder" in abstract_params
  if model_cfg.frame_encoder.name != "backbone" and not has_text:
    return None
  t = model_cfg.text
  num_layers = len(abstract_params["text_encoder"]["layers"]) if has_text else 0

  def label(path, _):
    p = convert.path_str(path)
    if p.startswith(recommender.TEXT_PREFIX):
      return text_lib.text_label(p[len(recommender.TEXT_PREFIX):], t.train_mode, t.top_layers,
                                 num_layers)
    return backbone_encoder.backbone_label(p, model_cfg)
  return jax.tree_util.tree_map_with_path(label, abstract_params)


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
    self.labels = param_labels(abstract_params.to_pure_dict(), config.model)
    self.tx = make_optimizer(config.train, self.labels)
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
    """A fresh state, born sharded: jit with out_shardings, never whole on one device. A
    pretrained backbone's weights then replace its random initialisation, shard by shard."""
    state = jax.jit(self._init, out_shardings=self.state_shardings)(jax.random.PRNGKey(seed))
    m = self.config.model
    b = m.get("backbone")
    if m.frame_encoder.name == "backbone" and not b.from_cache:
      state = self._load(state, backbone_encoder.BACKBONE_PREFIX,
                         backbones.converted_params(b.name, b.checkpoint or None))
    if "text_encoder" in state.params:
      state = self._load(state, recommender.TEXT_PREFIX, text_lib.converted_params(m.text.name))
    return state

  def _load(self, state: TrainState, prefix: str, arrays: dict) -> TrainState:
    """Replaces the parameters under `prefix` by pretrained `arrays` (keyed by the rest of the
    path), each put straight into its sharding."""
    def put(path, x, sharding):
      key = convert.path_str(path)
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
    return jax.tree.map(lambda p, lab: jax.lax.stop_gradient(p) if lab == "frozen" else p,
                        params, self.labels)

  def model(self, params: dict):
    return nnx.merge(self.graphdef, nnx.State(params))
