"""Strict conversion of foreign checkpoints (PyTorch state dicts) into Flax NNX parameters.

A conversion is declarative: a list of `Rule`s maps each Flax parameter path (regular expression
over the '/'-joined path) to a checkpoint tensor name (a template using the regex groups) and
names a small layout hook (OIHW -> HWIO, (out, in) -> (in, out), ...). Conversion is strict:
every Flax parameter must be filled, every checkpoint tensor used (apart from explicitly ignored
names), and every shape must match; otherwise `ConversionError` lists what is missing, unexpected
or mismatched.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class ConversionError(ValueError):
  """A checkpoint does not fit the model: names the missing, unexpected and mismatched tensors."""


def _conv(w: np.ndarray) -> np.ndarray:
  """PyTorch conv kernel (O, I/groups, kH, kW) -> Flax (kH, kW, I/groups, O); depthwise too."""
  if w.ndim != 4:
    raise ValueError(f"conv kernel must be 4-D, got shape {w.shape}")
  return np.transpose(w, (2, 3, 1, 0))


def _dense(w: np.ndarray) -> np.ndarray:
  """PyTorch linear weight (out, in) -> Flax kernel (in, out)."""
  if w.ndim != 2:
    raise ValueError(f"linear weight must be 2-D, got shape {w.shape}")
  return w.T


HOOKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda w: w, "conv": _conv, "dense": _dense}


@dataclasses.dataclass(frozen=True)
class Rule:
  """Flax parameter path regex -> checkpoint name template (regex groups as \\1) and a hook."""

  target: str
  source: str
  hook: str = "identity"


def path_str(path: Sequence) -> str:
  """A JAX tree path (dict keys, sequence indices, attribute names) as 'a/b/0/c'."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
                  for k in path)


def flat_params(tree) -> dict[str, object]:
  """'/'-joined path -> leaf for a (pure dict or nnx.State) parameter tree."""
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
  return {path_str(p): v for p, v in leaves}


def convert(checkpoint: Mapping[str, np.ndarray], targets: Mapping[str, tuple[tuple, object]],
            rules: Sequence[Rule], ignore: Sequence[str] = (), what: str = "checkpoint"
            ) -> dict[str, np.ndarray]:
  """Maps checkpoint tensors onto target parameters.

  Args:
    checkpoint: name -> array, e.g. from `vidrec_jax.checkpoints.read_torch`.
    targets: '/'-joined Flax path -> (shape, dtype) of every parameter to fill.
    rules: tried in order; the first whose `target` fully matches a path decides its source.
    ignore: regexes of checkpoint names that may stay unused (e.g. BN `num_batches_tracked`).
    what: names the checkpoint in errors.

  Returns:
    '/'-joined Flax path -> numpy array in the target dtype.

  Raises:
    ConversionError: listing parameters without a rule or tensor, unused checkpoint tensors and
      shape mismatches, all at once.
  """
  compiled = [(re.compile(r.target), r) for r in rules]
  out, used = {}, set()
  no_rule, missing, mismatched = [], [], []
  for path, (shape, dtype) in targets.items():
    match = next(((m, r) for rx, r in compiled if (m := rx.fullmatch(path))), None)
    if match is None:
      no_rule.append(path)
      continue
    m, rule = match
    src = m.expand(rule.source)
    if src not in checkpoint:
      missing.append(f"{path} <- {src}")
      continue
    used.add(src)
    value = HOOKS[rule.hook](np.asarray(checkpoint[src]))
    if tuple(value.shape) != tuple(shape):
      mismatched.append(f"{path} {tuple(shape)} <- {src} {tuple(value.shape)} ({rule.hook})")
      continue
    out[path] = np.ascontiguousarray(value).astype(dtype)
  ignored = [re.compile(p) for p in ignore]
  unexpected = sorted(k for k in checkpoint
                      if k not in used and not any(p.fullmatch(k) for p in ignored))
  if no_rule or missing or mismatched or unexpected:
    parts = []
    for label, items in (("parameters without a rule", no_rule),
                         ("missing in the checkpoint", missing),
                         ("shape mismatches", mismatched),
                         ("unexpected checkpoint tensors", unexpected)):
      if items:
        shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
        parts.append(f"{label}: {shown}")
    raise ConversionError(f"{what} does not fit the model: " + "; ".join(parts))
  return out


def load_into(abstract_state: nnx.State, arrays: Mapping[str, np.ndarray]) -> nnx.State:
  """Fills an abstract (eval_shape) NNX state with converted arrays, by '/'-joined path."""
  def fill(path, var):
    return var.replace(arrays[path_str(path)])
  return jax.tree_util.tree_map_with_path(
      fill, abstract_state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def targets_of(abstract_state: nnx.State) -> dict[str, tuple[tuple, object]]:
  """'/'-joined path -> (shape, dtype) of every variable of an abstract NNX state."""
  return {k: (tuple(v.get_value().shape), v.get_value().dtype)
          for k, v in flat_params(abstract_state).items()}


def convert_module(abstract_module: nnx.Module, tensors: Mapping[str, np.ndarray],
                   rules: Sequence[Rule], ignore: Sequence[str] = (), what: str = "checkpoint"
                   ) -> dict[str, np.ndarray]:
  """`convert` onto every parameter of a shape-only (eval_shape) module."""
  return convert(tensors, targets_of(nnx.state(abstract_module, nnx.Param)), rules, ignore,
                 what=what)


def with_weights(abstract_module: nnx.Module, arrays: Mapping[str, np.ndarray]) -> nnx.Module:
  """The module of a shape-only (eval_shape) `abstract_module` holding converted `arrays`."""
  graphdef, state = nnx.split(abstract_module, nnx.Param)
  return nnx.merge(graphdef, load_into(state, {k: jnp.asarray(v) for k, v in arrays.items()}))
