"""Logical axis names for parameters and activations, mapped to mesh axes by configured rules."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Sequence

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

Rules = Sequence[tuple[str, str | Sequence[str] | None]]

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("vidrec_sharding", default=None)


def param(init, names: tuple[str | None, ...]):
  """An initializer that tags its parameter with logical axis names."""
  return nnx.with_partitioning(init, names, eager_sharding=False)


def param_value(value: jax.Array, names: tuple[str | None, ...]) -> nnx.Param:
  """A parameter holding `value`, tagged with logical axis names.

  The names are metadata only (eager sharding off): the trainer maps them to mesh axes and
  creates every parameter inside a jit with out_shardings, so parameters are born sharded.
  """
  return nnx.Param(value, out_sharding=names, eager_sharding=False)


def logical_to_spec(names: Sequence[str | None], rules: Rules, shape: Sequence[int] | None = None,
                    mesh: jax.sharding.Mesh | None = None) -> PartitionSpec:
  """PartitionSpec for logical `names`. A mesh axis is used at most once per array, and a dim
  that the mapped axes do not divide evenly stays replicated (odd test sizes must still work)."""
  table = dict(rules)
  used: set[str] = set()
  out = []
  for i, name in enumerate(names):
    target = table.get(name) if name is not None else None
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    axes = tuple(a for a in axes if a not in used)
    if mesh is not None:
      axes = tuple(a for a in axes if mesh.shape[a] > 1)
      size = 1
      for a in axes:
        size *= mesh.shape[a]
      if shape is not None and shape[i] % size:
        axes = ()
    used.update(axes)
    out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*out)


@contextlib.contextmanager
def activation_sharding(mesh: jax.sharding.Mesh, rules: Rules):
  """Within this context `constrain` pins activations to the mesh by the same rules."""
  token = _ACTIVE.set((mesh, tuple(rules)))
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
  """with_sharding_constraint by logical names; a no-op outside `activation_sharding`."""
  active = _ACTIVE.get()
  if active is None:
    return x
  mesh, rules = active
  spec = logical_to_spec(names, rules, x.shape, mesh)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
