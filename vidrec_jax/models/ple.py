"""Progressive Layered Extraction (`model.trunk.name='ple'`): a multi-task trunk of
models/experts.py whose levels have shared and task-specific experts."""

from __future__ import annotations

import jax
from flax import nnx

from vidrec_jax.config_checks import positive_int
from vidrec_jax.models import layers
from vidrec_jax.models.experts import FIELD
from vidrec_jax.models.experts import TRUNKS
from vidrec_jax.models.experts import Experts
from vidrec_jax.models.experts import StackedDense
from vidrec_jax.models.experts import Trunk
from vidrec_jax.models.experts import axis_names
from vidrec_jax.models.experts import by_task
from vidrec_jax.models.experts import gate_softmax
from vidrec_jax.models.experts import mix
from vidrec_jax.models.experts import task_names
from vidrec_jax.models.partitioning import constrain


class ExtractionLevel(nnx.Module):
  """One PLE level (a customised gate control unit): `shared` experts, `task` experts per task,
  a gate per task over its own and the shared experts, and, unless it is the last level, a
  shared gate over all experts whose output is the next level's shared input."""

  def __init__(self, in_dim: int, hidden: int, num_tasks: int, shared: int, task: int,
               last: bool, *, dtype, param_dtype, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.num_tasks, self.task = num_tasks, task
    self.shared_experts = Experts(shared, in_dim, hidden, **kw)
    self.task_experts = Experts(num_tasks * task, in_dim, hidden, **kw)
    self.task_gates = StackedDense(num_tasks, in_dim, task + shared, ("embed", None), **kw)
    self.shared_gate = None if last else layers.dense(
        in_dim, num_tasks * task + shared, ("embed", None), **kw)

  def __call__(self, task_in: jax.Array, shared_in: jax.Array, per_task: bool
               ) -> tuple[jax.Array, jax.Array | None, jax.Array, jax.Array | None]:
    """Task inputs (..., T, in) (`per_task`) or one input (..., in) read by every task, and the
    shared input (..., in) -> task outputs (..., T, hidden), the shared output (..., hidden) or
    None at the last level, task gates (..., T, task + shared), the shared gate or None."""
    groups = self.num_tasks if per_task else None
    shared = self.shared_experts(shared_in)                          # (..., S, h)
    own = self.task_experts(task_in, groups)                         # (..., T * K, h)
    own_t = own.reshape(own.shape[:-2] + (self.num_tasks, self.task, own.shape[-1]))
    gates = gate_softmax(self.task_gates(task_in, groups))               # (..., T, K + S)
    out = (mix(gates[..., :self.task], own_t, "...tk,...tkh->...th")
           + mix(gates[..., self.task:], shared, "...ts,...sh->...th"))
    if self.shared_gate is None:
      return out, None, gates, None
    n = own.shape[-2]
    g = gate_softmax(self.shared_gate(shared_in))                        # (..., T * K + S)
    shared_out = (mix(g[..., :n], own, "...e,...eh->...h")
                  + mix(g[..., n:], shared, "...s,...sh->...h"))
    return out, shared_out, gates, g


@TRUNKS.register("ple")
class PLE(Trunk):
  """Progressive Layered Extraction (Tang et al., RecSys 2020): `levels` extraction levels of
  `shared_experts` shared and `task_experts` task-specific experts per task. At each level task
  t's gate mixes its own and the shared experts; every level but the last also has a shared gate
  over all experts, feeding the next level's shared experts. The first level reads x for every
  expert and gate; later levels read the previous level's task (or shared) outputs.

  Args:
    shared_experts: experts shared by all tasks, per level.
    task_experts: experts of each task, per level.
    levels: extraction levels.
  """

  def __init__(self, in_dim: int, hidden: int, tasks: tuple[str, ...], *, shared_experts: int,
               task_experts: int, levels: int, dtype, param_dtype, rngs: nnx.Rngs):
    self.tasks, self.out_features = task_names(tasks), hidden
    self.levels = nnx.List([
        ExtractionLevel(in_dim if i == 0 else hidden, hidden, len(self.tasks), shared_experts,
                        task_experts, i == levels - 1, dtype=dtype, param_dtype=param_dtype,
                        rngs=rngs)
        for i in range(levels)])

  @classmethod
  def validate(cls, *, shared_experts, task_experts, levels) -> None:
    for name, value in (("shared_experts", shared_experts), ("task_experts", task_experts),
                        ("levels", levels)):
      positive_int(value, f"{FIELD}.{name}")

  def level_gates(self, x: jax.Array) -> tuple[dict[str, jax.Array],
                                               list[tuple[jax.Array, jax.Array | None]]]:
    """The task outputs (..., T, hidden) as a dict, and per level the task gates (..., T, n) and
    the shared gate (..., m) (None at the last level)."""
    task_in, shared_in, per_task, gates = x, x, False, []
    for level in self.levels:
      task_in, shared_in, g_tasks, g_shared = level(task_in, shared_in, per_task)
      task_in = constrain(task_in, axis_names(task_in.ndim, None, "mlp"))
      per_task = True
      gates.append((g_tasks, g_shared))
    return by_task(self.tasks, task_in), gates

  def __call__(self, x):
    hidden, gates = self.level_gates(x)
    return hidden, by_task(self.tasks, gates[-1][0])
