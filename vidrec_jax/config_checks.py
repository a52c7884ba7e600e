"""Config checks shared by `validate.py` and the registered parts that check their own arguments.

Every rejection is one line naming the field, the value and what is allowed. A part checks its
own section; what it needs of another section it declares as `Needs` (the fields it reads, each
with a check of its value), which validate.py looks up and runs: no part is given the config.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Callable, Mapping


class ConfigError(ValueError):
  """A bad config value; str() is one line."""


def check(ok: bool, field: str, value: Any, allowed: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}={value!r} is not allowed; {allowed}")


# A part's rules on fields outside its own section: (dotted config field, a check of that field's
# value that raises ConfigError), in the order they are checked.
Needs = list[tuple[str, Callable[[Any], None]]]


def check_needs(config: Any, needs: Needs) -> None:
  """Runs each rule of `needs` on the value of its field in `config` (nested sections by key)."""
  for field, rule in needs:
    value = config
    for key in field.split("."):
      value = value[key]
    rule(value)


def positive_int(value: Any, field: str) -> None:
  check(isinstance(value, int) and not isinstance(value, bool) and value > 0, field, value,
        "expected a positive integer")


def typed_kwargs(fn: Callable, section: Mapping[str, Any], field: str,
                 supplied: tuple[str, ...] = ()) -> dict[str, Any]:
  """`section` (a config dict) as keyword arguments of `fn`, checked against its signature: a
  key it does not take, or a parameter without a default that the section leaves out, is a
  ConfigError naming `field`. The section's `name` (which registered part it is) is dropped
  unless `fn` takes a `name`. `supplied` names parameters the caller passes itself (dtype,
  rngs, ...)."""
  params = inspect.signature(fn).parameters
  kwargs = {k: v for k, v in dict(section).items() if k != "name" or "name" in params}
  takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
  own = [n for n, p in params.items() if n not in supplied and n != "self"
         and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
  unknown = sorted(k for k in kwargs if k not in own) if not takes_any else []
  missing = [n for n in own if n not in kwargs and params[n].default is inspect.Parameter.empty]
  if unknown or missing:
    what = "; ".join(x for x in (
        f"unknown argument(s) {', '.join(unknown)}" if unknown else "",
        f"missing argument(s) {', '.join(missing)}" if missing else "") if x)
    raise ConfigError(f"config.{field}: {what}; {getattr(fn, '__qualname__', fn)} takes "
                      f"{', '.join(own) or 'no arguments'}")
  return {k: (tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()}


def signature_defaults(fn: Callable, prefix: str, supplied: tuple[str, ...] = ()
                       ) -> dict[str, Any]:
  """'prefix.<parameter>' -> its default, as JSON holds it (tuples become lists), for every
  parameter of `fn` (a function or a dataclass) with a default, except those in `supplied`."""
  params = inspect.signature(fn).parameters
  return {f"{prefix}.{n}": json.loads(json.dumps(p.default)) for n, p in params.items()
          if n not in supplied and n != "self" and p.default is not inspect.Parameter.empty}
