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
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
  """A name that is not registered; str() is one line naming the registered ones."""


class Registry(Generic[T]):
  """Name -> part, for one kind of part."""

  def __init__(self, kind: str):
    self.kind = kind
    self._parts: dict[str, T] = {}

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
      raise UnknownNameError(self.unknown(name)) from None

  def unknown(self, name) -> str:
    return f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(self._parts))

  def items(self):
    return sorted(self._parts.items())

  def __contains__(self, name) -> bool:
    return name in self._parts

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def __len__(self) -> int:
    return len(self._parts)
