"""Fusion formulas: the heads' predictions of a candidate -> the one score that orders a list.

A formula is a small arithmetic expression over head names, e.g. `click * (1 + 0.1 *
watch_time)` (click and like are probabilities, watch_time is seconds). Allowed: the given
names, numbers, `+ - * / **`, unary minus, parentheses and the functions `log`, `exp`, `min`,
`max` (elementwise; min and max take two or more arguments). The text is parsed with `ast` and
compiled into nested closures: nothing is ever evaluated as Python code.

This module imports numpy only (jax.numpy lazily, when it is handed jax arrays), so a serving
bundle can use it without the trainer's dependencies; validate.py checks `recommend.fusion`
with it before --mode=recommend and --mode=export.
"""

from __future__ import annotations

import ast
import functools
import importlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

FUNCTIONS = ("log", "exp", "min", "max")
OPERATORS = "+ - * / ** and parentheses"

Formula = Callable[[Mapping[str, Any]], Any]

_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: lambda a, b: a ** b}
_UNARY = {ast.USub: lambda a: -a, ast.UAdd: lambda a: +a}


class FormulaError(ValueError):
  """A formula that does not parse or uses something not allowed; str() is one line."""


def _namespace(values: Mapping[str, Any]):
  """jax.numpy when any value is a jax array or tracer, numpy otherwise."""
  if any(type(v).__module__.startswith("jax") for v in values.values()):
    return importlib.import_module("jax.numpy")
  return np


def _reduce(op: str):
  def fn(xp, *args):
    return functools.reduce(getattr(xp, op), args)
  return fn


_FUNCTIONS = {"log": lambda xp, x: xp.log(x), "exp": lambda xp, x: xp.exp(x),
              "min": _reduce("minimum"), "max": _reduce("maximum")}
_ARITY = {"log": (1, 1), "exp": (1, 1), "min": (2, None), "max": (2, None)}


def _compile(node: ast.AST, names: frozenset[str], allowed: str) -> Callable:
  """Node -> fn(xp, values) returning the node's value."""
  if isinstance(node, ast.Expression):
    return _compile(node.body, names, allowed)
  if isinstance(node, ast.Constant):
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
      raise FormulaError(f"{node.value!r} is not a number; {allowed}")
    value = np.float32(node.value)  # float32 like the predictions: overflow gives inf
    return lambda xp, v: value
  if isinstance(node, ast.Name):
    if node.id in FUNCTIONS and node.id not in names:
      raise FormulaError(f"{node.id!r} is a function: call it as {node.id}(...); {allowed}")
    if node.id not in names:
      raise FormulaError(f"unknown name {node.id!r}; {allowed}")
    key = node.id
    return lambda xp, v: v[key]
  if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
    op = _BINARY[type(node.op)]
    left, right = _compile(node.left, names, allowed), _compile(node.right, names, allowed)
    return lambda xp, v: op(left(xp, v), right(xp, v))
  if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
    op, operand = _UNARY[type(node.op)], _compile(node.operand, names, allowed)
    return lambda xp, v: op(operand(xp, v))
  if isinstance(node, ast.Call):
    fname = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
    if fname not in _FUNCTIONS or node.keywords:
      raise FormulaError(f"call {ast.unparse(node)!r} is not allowed; {allowed}")
    lo, hi = _ARITY[fname]
    n = len(node.args)
    if n < lo or (hi is not None and n > hi) or any(isinstance(a, ast.Starred)
                                                    for a in node.args):
      want = f"{lo}" if lo == hi else f"{lo} or more"
      raise FormulaError(f"{fname}() takes {want} argument(s), got {n}; {allowed}")
    fn, args = _FUNCTIONS[fname], [_compile(a, names, allowed) for a in node.args]
    return lambda xp, v: fn(xp, *(a(xp, v) for a in args))
  what = (f"operator {ast.unparse(node)!r}" if isinstance(node, (ast.BinOp, ast.UnaryOp,
                                                                 ast.BoolOp, ast.Compare))
          else f"{type(node).__name__} {ast.unparse(node)!r}")
  raise FormulaError(f"{what} is not allowed; {allowed}")


def compile_formula(text: str, names: Sequence[str]) -> Formula:
  """Compiles a fusion formula over `names` (the heads' names).

  Args:
    text: the formula, e.g. `click * (1 + 0.1 * watch_time)`.
    names: the names it may read.

  Returns:
    fn(values) -> the formula over `values` (name -> array, numpy or jax; every array of one
    shape): an array of that shape.

  Raises:
    FormulaError: one line saying what is wrong and what is allowed.
  """
  names = frozenset(names)
  allowed = (f"allowed: the names {', '.join(sorted(names)) or '(none)'}, numbers, "
             f"{OPERATORS}, and the functions {', '.join(FUNCTIONS)}")
  if not isinstance(text, str) or not text.strip():
    raise FormulaError(f"the formula is empty; {allowed}")
  try:
    tree = ast.parse(text.strip(), mode="eval")
  except SyntaxError as e:
    raise FormulaError(f"syntax error at column {e.offset or 0}: {e.msg}; {allowed}") from None
  fn = _compile(tree, names, allowed)

  def formula(values: Mapping[str, Any]):
    if not values:
      raise ValueError("a fusion formula needs at least one head's predictions")
    xp = _namespace(values)
    shape = xp.shape(next(iter(values.values())))
    return xp.broadcast_to(xp.asarray(fn(xp, values), dtype=xp.float32), shape)

  return formula
