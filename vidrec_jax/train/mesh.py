"""The device mesh from config, and shardings for parameters, optimizer state and batches."""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
from flax import nnx
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vidrec_jax.checkpoints.convert import path_str
from vidrec_jax.models.partitioning import logical_to_spec
from vidrec_jax.run_spec import MeshSpec

AXES = ("data", "fsdp", "model")


def mesh_shape(mesh_cfg: MeshSpec, num_devices: int) -> tuple[int, ...]:
  """Resolves the configured axis sizes (one of them may be -1) against the device count."""
  shape = [int(mesh_cfg.shape[a]) for a in AXES]
  if shape.count(-1) > 1:
    raise ValueError(f"mesh.shape={dict(mesh_cfg.shape)}: at most one axis may be -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"mesh.shape={dict(mesh_cfg.shape)} does not divide {num_devices} devices")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f"mesh.shape={dict(mesh_cfg.shape)} needs {math.prod(shape)} devices, "
                     f"{num_devices} are available")
  return tuple(shape)


def make_mesh(mesh_cfg: MeshSpec, devices=None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  shape = mesh_shape(mesh_cfg, len(devices))
  try:
    arr = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, AssertionError, NotImplementedError):
    arr = np.asarray(devices).reshape(shape)
  return Mesh(arr, AXES)


def _names(var: nnx.Variable) -> tuple:
  names = var.get_metadata().get("out_sharding")
  return tuple(names) if names else (None,) * len(var.get_value().shape)


def param_shardings(abstract_params: nnx.State, mesh: Mesh, rules) -> dict:
  """NamedSharding per parameter (pure dict), from its logical axis names and the rules."""
  def one(var):
    shape = var.get_value().shape
    return NamedSharding(mesh, logical_to_spec(_names(var), rules, shape, mesh))
  return jax.tree.map(one, abstract_params, is_leaf=lambda x: isinstance(x, nnx.Variable)
                      ).to_pure_dict()


def opt_state_shardings(tx: optax.GradientTransformation, abstract_opt_state, param_sh: dict,
                        mesh: Mesh):
  """Parameter-shaped optimizer slots follow their parameter; everything else is replicated.

  A slot is matched to a parameter by path suffix (optax nests each params-shaped tree under its
  state's field, e.g. `.../mu/<param path>`), which also works inside `multi_transform`, whose
  masked states hold only some parameters.
  """
  del tx
  repl = NamedSharding(mesh, PartitionSpec())
  by_path = {tuple(path_str(path).split("/")): sh
             for path, sh in jax.tree_util.tree_flatten_with_path(param_sh)[0]}
  depth = max((len(p) for p in by_path), default=0)

  def one(path, leaf):
    keys = tuple(path_str(path).split("/"))
    for n in range(min(depth, len(keys)), 0, -1):
      sh = by_path.get(keys[-n:])
      if sh is not None and len(sh.spec) <= len(getattr(leaf, "shape", ())):
        return sh
    return repl
  return jax.tree_util.tree_map_with_path(one, abstract_opt_state)


def replicate(tree, mesh: Mesh):
  """Every array of `tree` put whole on every device of `mesh` (catalog arrays, frozen state)."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def process_rows(batch: dict, flag: str) -> dict:
  """This process's contiguous share of the rows of a batch every process holds whole: process
  i of n keeps rows [i * rows / n, (i + 1) * rows / n). `flag` names the config field that sets
  the batch's rows, for the error when they do not divide among the processes."""
  pc, pi = jax.process_count(), jax.process_index()
  n = len(next(iter(batch.values())))
  if n % pc:
    raise ValueError(f"a batch of {n} rows ({flag}) does not divide among {pc} processes; "
                     f"make {flag} a multiple of the process count")
  local = n // pc
  return {k: v[pi * local:(pi + 1) * local] for k, v in batch.items()}


def batch_sharding(mesh: Mesh, rules, ndim: int, shape=None) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (ndim - 1), rules, shape,
                                             mesh))


def shard_batch(batch: dict, mesh: Mesh, rules) -> dict:
  """Host-local numpy batch -> global jax arrays sharded over the batch axes."""
  def one(x):
    x = np.asarray(x)
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    sh = batch_sharding(mesh, rules, x.ndim, global_shape)
    return jax.make_array_from_process_local_data(sh, x, global_shape)
  return {k: one(v) for k, v in batch.items()}


def shard_bytes(leaf, sharding) -> int:
  """Bytes one device holds of an array (or ShapeDtypeStruct) laid out by `sharding`."""
  return math.prod(sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize


def bytes_per_device(tree, shardings) -> int:
  """Bytes per device of a whole tree (parameters, optimizer state) under its shardings."""
  return sum(shard_bytes(a, s) for a, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)))


def param_table(abstract_params: dict, shardings: dict, min_bytes: int = 0) -> str:
  """One line per parameter: path, shape, PartitionSpec and bytes per device."""
  lines = [f"{'parameter':48s} {'shape':>16s} {'sharding':>28s} {'bytes/device':>14s}"]
  total = 0
  flat = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
  sh = jax.tree.leaves(shardings)
  for (path, a), s in zip(flat, sh):
    name = path_str(path)
    nbytes = shard_bytes(a, s)
    total += nbytes
    if math.prod(a.shape) * a.dtype.itemsize >= min_bytes:
      lines.append(f"{name[-48:]:48s} {str(tuple(a.shape)):>16s} {str(s.spec):>28s} {nbytes:14,d}")
  lines.append(f"{'total parameter bytes per device':48s} {'':>16s} {'':>28s} {total:14,d}")
  return "\n".join(lines)
