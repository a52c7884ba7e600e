"""The one registry shape for every kind of part: datasets, encoders, poolings, user towers,
heads, retrieval tasks, evaluators, trainers, pretrained parts.

A registry maps a name (the string a config uses) to a part (a class, or a small description
object). Registering twice under one name is an error; asking for an unknown name raises
`UnknownNameError` with one line listing what is registered:

  HEADS = Registry("head")

  @HEADS.register("click")
  class ClickHead(...): ...

  HEADS.get("clik")  # UnknownNameError: unknown head 'clik'; registered: click, like, watch_time

A test or a user's own module registers a part with the same call; nothing in the library
needs to be edited.

Registration is discovery: a registry made with `package=` finds its parts by importing that
package's modules, so no import list names them. An unknown name first imports
`package.<name>` (a part in a file of its own name), then every module of the package; listing
the names (`names`, `items`, `in`, iteration) imports them all first. `package` may be a tuple:
parts of one kind in several places (the RL trainer lives in `vidrec_jax.rl.trainer`, beside
the RL code it reads); a plain module in it is imported as it is. Parts outside the
library come in through `config.imports` (`import_modules`): the modules named there are
imported before the config is checked, and register themselves as any part does.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
  """A name that is not registered; str() is one line naming the registered ones."""


class Registry(Generic[T]):
  """Name -> part, for one kind of part."""

  def __init__(self, kind: str, package: str | tuple[str, ...] | None = None):
    """`kind` names the part in messages; `package` (a dotted module path, or a tuple of
    them) holds its parts."""
    self.kind, self.package = kind, package
    self._packages = (package,) if isinstance(package, str) else tuple(package or ())
    self._parts: dict[str, T] = {}
    self._discovered = not self._packages

  def _discover(self, name: str | None = None) -> None:
    """Imports `<package>.<name>` (when given and it exists), then every module of each
    package once. A module that exists but fails to import raises: a broken part is never
    skipped."""
    if self._discovered:
      return
    if isinstance(name, str) and name.isidentifier():
      for package in self._packages:
        try:
          importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
          if e.name != f"{package}.{name}":
            raise
        if name in self._parts:
          return
    for package in self._packages:
      pkg = importlib.import_module(package)
      for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        importlib.import_module(f"{package}.{info.name}")
    self._discovered = True

  def register(self, name: str, part: T | None = None) -> Callable[[T], T] | T:
    """Registers `part` under `name`; without `part`, returns a decorator that does."""
    def add(p: T) -> T:
      if name in self._parts and self._parts[name] is not p:
        raise ValueError(f"a {self.kind} named {name!r} is already registered")
      self._parts[name] = p
      return p
    return add if part is None else add(part)

  def unregister(self, name: str) -> None:
    """Removes `name` (tests that register a part of their own clean up with this)."""
    self._parts.pop(name, None)

  def get(self, name: str) -> T:
    try:
      return self._parts[name]
    except (KeyError, TypeError):
      pass
    self._discover(name)
    try:
      return self._parts[name]
    except (KeyError, TypeError):
      raise UnknownNameError(self.unknown(name)) from None

  def unknown(self, name) -> str:
    return f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"

  def names(self) -> tuple[str, ...]:
    self._discover()
    return tuple(sorted(self._parts))

  def items(self):
    self._discover()
    return sorted(self._parts.items())

  def __contains__(self, name) -> bool:
    if name not in self._parts:
      self._discover(name)
    return name in self._parts

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def __len__(self) -> int:
    self._discover()
    return len(self._parts)


def import_modules(modules: Iterable[str], field: str = "imports") -> None:
  """Imports each dotted module path (`config.imports`: parts from outside the library register
  themselves on import); a module that cannot be found is one line naming it."""
  for module in modules:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name is not None and module.startswith(e.name):
        raise ValueError(f"config.{field}: cannot import {module!r} (no module named "
                         f"{e.name!r}); give importable dotted module paths") from None
      raise
