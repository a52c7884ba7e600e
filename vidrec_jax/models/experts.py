"""Multi-task trunks: one input vector -> one hidden vector per task, for the task heads.

Registered by name (`model.trunk.name`); the rest of the `model.trunk` section are the trunk's
typed arguments:

  shared_bottom  one MLP, the same hidden vector for every task.
  mmoe           Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): shared experts, one softmax
                 gate per task.
  ple            Progressive Layered Extraction (Tang et al., RecSys 2020): levels of shared and
                 task-specific experts with task gates, and a shared gate feeding the next level
                 (models/ple.py: a trunk in a file of its own, found by its name).
  linear         no hidden layer: every task reads the input itself ([u, i, u*i] in the
                 recommender), so each head is a weighted dot product of the shared user and
                 item vectors plus linear user and item terms: multi-task matrix factorisation,
                 where every task's gradient shapes the same embeddings.

Experts are stored stacked (one (E, in, out) kernel per layer) and run together in one einsum.
A trunk returns the per-task hidden vectors and the per-task gate weights (for probes and plots).

Adding a trunk: a `Trunk` subclass registered in `TRUNKS`, with a `validate` of its arguments,
here or in a file of its own under vidrec_jax/models/ (`TRUNKS` finds it).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.dtypes import promote_dtype

from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.config_checks import typed_kwargs
from vidrec_jax.models import layers
from vidrec_jax.models.partitioning import constrain
from vidrec_jax.models.partitioning import param_value
from vidrec_jax.registry import Registry

# Arguments the model builder passes to every trunk itself.
SUPPLIED = ("in_dim", "hidden", "tasks", "dtype", "param_dtype", "rngs")
FIELD = "model.trunk"

# Fan-in over the input axis only: each of the stacked matrices is initialised like one dense
# layer (the stacking axis is a batch axis, not more inputs).
STACKED_INIT = jax.nn.initializers.lecun_normal(batch_axis=(0,))


def axis_names(ndim: int, *inner: str | None) -> tuple[str | None, ...]:
  """Logical names of an activation with any leading shape: the first axis is the batch."""
  lead = ndim - len(inner)
  return (("batch",) + (None,) * (lead - 1) if lead > 0 else ()) + inner


class StackedDense(nnx.Module):
  """`num` dense layers in_dim -> out_dim with one kernel (num, in_dim, out_dim), applied at once.

  `groups=None`: every layer reads the same x (..., in_dim). `groups=G`: x is (..., G, in_dim)
  and layer s reads x[..., s // (num / G), :] (G = num: each layer its own input).
  """

  def __init__(self, num: int, in_dim: int, out_dim: int, names: tuple[str | None, str | None],
               *, dtype, param_dtype, rngs: nnx.Rngs):
    self.num, self.dtype = num, dtype
    self.kernel = param_value(
        STACKED_INIT(rngs.params(), (num, in_dim, out_dim), param_dtype), (None,) + names)
    self.bias = param_value(jnp.zeros((num, out_dim), param_dtype), (None, names[1]))

  def __call__(self, x: jax.Array, groups: int | None = None) -> jax.Array:
    """x (..., in_dim) or (..., groups, in_dim) -> (..., num, out_dim)."""
    x, kernel, bias = promote_dtype((x, self.kernel[...], self.bias[...]), dtype=self.dtype)
    if groups is None:
      y = jnp.einsum("...i,nio->...no", x, kernel)
    else:
      k = kernel.reshape((groups, self.num // groups) + kernel.shape[1:])
      y = jnp.einsum("...gi,gnio->...gno", x, k).reshape(x.shape[:-2] + (self.num, -1))
    return y + bias


class Experts(nnx.Module):
  """`num` expert MLPs in_dim -> hidden -> hidden, GELU after each layer (the last too)."""

  def __init__(self, num: int, in_dim: int, hidden: int, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.layers = nnx.List([StackedDense(num, in_dim, hidden, ("embed", "mlp"), **kw),
                            StackedDense(num, hidden, hidden, ("embed", "mlp"), **kw)])

  def __call__(self, x: jax.Array, groups: int | None = None) -> jax.Array:
    """x (..., in_dim), or (..., groups, in_dim) as in `StackedDense` -> (..., num, hidden)."""
    h = jax.nn.gelu(self.layers[0](x, groups))
    h = jax.nn.gelu(self.layers[1](h, groups=self.layers[1].num))
    return constrain(h, axis_names(h.ndim, None, "mlp"))


def gate_softmax(logits: jax.Array) -> jax.Array:
  """Gate weights in float32 (they sum to one even when the logits are bfloat16)."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def mix(gates: jax.Array, experts: jax.Array, spec: str) -> jax.Array:
  return jnp.einsum(spec, gates.astype(experts.dtype), experts)


class Trunk(nnx.Module):
  """Base: `__call__(x (..., in_dim)) -> (hidden (..., hidden) per task, gates per task)`.

  Args (of every trunk's `__init__`):
    in_dim: width of the input vector.
    hidden: width of each task's hidden vector.
    tasks: task names, the keys of both returned dicts.
    dtype: compute dtype; param_dtype: parameter dtype; rngs: parameter initialisation.
  """

  tasks: tuple[str, ...]
  out_features: int  # width of each task's hidden vector (what the heads read)

  @classmethod
  def config_kwargs(cls, trunk_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The trunk's own typed `__init__` arguments from its config section (minus `name`)."""
    return typed_kwargs(cls.__init__, trunk_cfg, FIELD, SUPPLIED)

  @classmethod
  def validate(cls, **kwargs) -> None:
    """Raises config_checks.ConfigError on a bad argument (given `config_kwargs`)."""
    del kwargs

  def __call__(self, x: jax.Array) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    raise TypeError("a trunk defines __call__")


TRUNKS: Registry[type[Trunk]] = Registry("trunk", package="vidrec_jax.models")


def task_names(tasks) -> tuple[str, ...]:
  tasks = tuple(tasks)
  if not tasks or len(set(tasks)) != len(tasks):
    raise ValueError(f"a trunk needs at least one task and distinct task names, got {tasks}")
  return tasks


def by_task(tasks: tuple[str, ...], x: jax.Array) -> dict[str, jax.Array]:
  """(..., T, n) -> {task: (..., n)}."""
  return {t: x[..., i, :] for i, t in enumerate(tasks)}


@TRUNKS.register("shared_bottom")
class SharedBottom(Trunk):
  """One MLP in_dim -> hidden -> hidden with GELU; every task gets the same hidden vector.

  `mlp` is the only parameterised part, created first: parameters initialise exactly as the
  recommender's single trunk MLP did before trunks were registered parts.
  """

  def __init__(self, in_dim: int, hidden: int, tasks: tuple[str, ...], *, dtype, param_dtype,
               rngs: nnx.Rngs):
    self.mlp = layers.MLP((in_dim, hidden, hidden), ("embed", "mlp"), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.tasks = task_names(tasks)
    self.out_features = hidden

  def __call__(self, x):
    h = jax.nn.gelu(self.mlp(x))
    return {t: h for t in self.tasks}, {}


@TRUNKS.register("linear")
class Linear(Trunk):
  """No parameters: every task's hidden vector is the input itself (width in_dim; `hidden` is
  not used), so the heads are linear in it."""

  def __init__(self, in_dim: int, hidden: int, tasks: tuple[str, ...], *, dtype, param_dtype,
               rngs: nnx.Rngs):
    del hidden, param_dtype, rngs
    self.tasks, self.out_features, self.dtype = task_names(tasks), in_dim, dtype

  def __call__(self, x):
    x = x.astype(self.dtype)
    return {t: x for t in self.tasks}, {}


@TRUNKS.register("mmoe")
class MMoE(Trunk):
  """Multi-gate Mixture-of-Experts (Ma et al., KDD 2018): `num_experts` shared expert MLPs and
  one softmax gate per task over them; task t's hidden vector is sum_e gate_t(x)_e expert_e(x).

  Args:
    num_experts: how many experts all tasks share.
  """

  def __init__(self, in_dim: int, hidden: int, tasks: tuple[str, ...], *, num_experts: int,
               dtype, param_dtype, rngs: nnx.Rngs):
    self.tasks, self.out_features = task_names(tasks), hidden
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.experts = Experts(num_experts, in_dim, hidden, **kw)
    self.gates = StackedDense(len(self.tasks), in_dim, num_experts, ("embed", None), **kw)

  @classmethod
  def validate(cls, *, num_experts) -> None:
    positive_int(num_experts, f"{FIELD}.num_experts")

  def __call__(self, x):
    experts = self.experts(x)                      # (..., E, hidden)
    gates = gate_softmax(self.gates(x))                # (..., T, E)
    h = mix(gates, experts, "...te,...eh->...th")
    h = constrain(h, axis_names(h.ndim, None, "mlp"))
    return by_task(self.tasks, h), by_task(self.tasks, gates)


def validate(trunk_cfg: Mapping[str, Any]) -> None:
  """Raises ConfigError on an unknown trunk name, unknown or missing arguments, or bad values."""
  name = trunk_cfg["name"] if "name" in trunk_cfg else None
  check(name in TRUNKS, f"{FIELD}.name", name, f"registered: {', '.join(TRUNKS.names())}")
  cls = TRUNKS.get(name)
  cls.validate(**cls.config_kwargs(trunk_cfg))


def build(trunk_cfg: Mapping[str, Any], in_dim: int, hidden: int, tasks: tuple[str, ...],
          **kw) -> Trunk:
  """The registered trunk `trunk_cfg["name"]`, the section's other fields as its arguments.

  Args:
    trunk_cfg: the `model.trunk` section, e.g. {"name": "mmoe", "num_experts": 4}.
    in_dim: input width; hidden: per-task hidden width; tasks: task names.
    **kw: dtype, param_dtype and rngs.

  Returns:
    The trunk module.

  Raises:
    ConfigError: on a bad section (see `validate`).
  """
  validate(trunk_cfg)
  cls = TRUNKS.get(trunk_cfg["name"])
  return cls(in_dim, hidden, tuple(tasks), **cls.config_kwargs(trunk_cfg), **kw)

