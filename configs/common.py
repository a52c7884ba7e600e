"""Typed config arguments: `configs/demo.py:smoke,frames=8` -> variants {'smoke'} and typed
values {'frames': 8}, as big_vision's `parse_arg`."""

from __future__ import annotations

from typing import Any


def _typed(key: str, value: str, default: Any) -> Any:
  if isinstance(default, bool):
    if value.lower() in ("1", "true", "yes"):
      return True
    if value.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"config argument {key}={value!r}: expected true or false")
  try:
    return type(default)(value)
  except ValueError:
    raise ValueError(f"config argument {key}={value!r}: expected a "
                     f"{type(default).__name__}") from None


def parse_arg(arg: str, name: str, variants: tuple[str, ...], **defaults: Any
              ) -> tuple[list[str], dict[str, Any]]:
  """Splits a config argument at commas into bare variant names and `key=value` pairs.

  Args:
    arg: e.g. 'smoke,frames=8'.
    name: the config file, for error messages.
    variants: the allowed bare words.
    **defaults: the allowed keys with an example value each; a value takes its type.

  Returns:
    (the variants in order, the keys given with their typed values).

  Raises:
    ValueError: an unknown variant or key (naming the allowed ones), or a value of the wrong
      type.
  """
  chosen, values = [], {}
  for part in (p.strip() for p in arg.split(",") if p.strip()):
    if "=" in part:
      key, value = part.split("=", 1)
      if key not in defaults:
        raise ValueError(f"configs/{name}: unknown argument {key!r}; allowed: "
                         f"{', '.join(sorted(defaults))}")
      values[key] = _typed(key, value, defaults[key])
    elif part in variants:
      chosen.append(part)
    else:
      raise ValueError(f"configs/{name}: unknown variant {part!r}; allowed: "
                       f"{', '.join(variants)}")
  return chosen, values
