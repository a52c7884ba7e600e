"""The config of record: the resolved config of a run is written to WORKDIR/config.json when
training starts; resuming (or evaluating) with a config that changes training is refused in one
line naming the changed fields.

What may change between runs in one workdir: the length of training (`train.steps`), logging,
evaluation and checkpoint cadence, the mesh (checkpoints restore onto any mesh), and how the
loaders read (worker, thread and prefetch counts change no number; tested). Everything else -
model, data, optimizer, seeds - defines the run.

The record is the config with every part's signature defaults filled in and the fields that do
nothing in it left out (`PartTerms`, from the model: models/two_tower_config.py `record_terms`):
a part's arguments are recorded whether the config file names them or not, and the loss weights
only of the heads and tasks that train. A field absent from an older record is no change when its
new value is the part's default: an optional argument added to a part later (at the default,
which does what the code did before it existed) resumes an old workdir without any entry here.
A field that does nothing in the config (a loss weight of a head that is not trained, a
switched-off stream's settings: `FrameEncoder.inert_args`) is never a change. Any other
difference is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

import ml_collections

from vidrec_jax import files

CONFIG_JSON = "config.json"
MAY_CHANGE = ("mode", "train.steps", "train.log_every", "train.eval_every",
              "train.checkpoint_every", "train.keep_checkpoints", "train.best_metric",
              "train.best_mode", "evals", "mesh", "data.num_workers", "data.read_threads",
              "data.prefetch_batches", "data.eval_batch_size", "sweep", "rl.seeds", "rl.policies",
              "rl.serving",
              "rl.eval_sessions", "rl.eval_seed",
              "imports",  # which modules register parts; a part the run uses must still exist
              "recommend")  # serving settings (k, candidates, fusion): read by recommend/export


@dataclasses.dataclass(frozen=True)
class PartTerms:
  """What a config's parts say about its record. `defaults`: field -> the value its part takes
  when the field is absent (a signature default, as JSON holds it); `inert(field)`: whether the
  field does nothing in this config."""

  defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  inert: Callable[[str], bool] = lambda field: False


class ConfigChangedError(ValueError):
  """A workdir's run was trained with another config; the message is one line."""


def flat(tree, prefix: str = "") -> dict:
  """A nested dict as {'a.b.c': leaf}."""
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def _may_change(field: str) -> bool:
  return any(field == f or field.startswith(f + ".") for f in MAY_CHANGE)


def resolved(config: ml_collections.ConfigDict, terms: PartTerms = PartTerms()) -> dict:
  """The config as JSON holds it (tuples become lists), with the parts' defaults filled in and
  the fields that do nothing in it (`terms.inert`) left out."""
  out = json.loads(config.to_json())
  given = flat(out)
  for field in set(given) | set(terms.defaults):
    *path, leaf = field.split(".")
    node = out
    for k in path:
      node = node.setdefault(k, {})
    if terms.inert(field):
      node.pop(leaf, None)
    elif field not in given:
      node[leaf] = terms.defaults[field]
  return out


# Fields added to the base config after runs were recorded without them: field -> what such a
# record ran with (a run of the same value resumes in its workdir).
ADDED_FIELDS = {"data.frame_selection": "spaced"}


def changed_fields(saved: dict, config: ml_collections.ConfigDict,
                   terms: PartTerms = PartTerms()) -> list[str]:
  """Fields outside MAY_CHANGE whose value differs, as 'field: old -> new'."""
  old, new = flat(saved), flat(resolved(config, terms))
  missing = object()
  defaults = {**ADDED_FIELDS, **terms.defaults}

  def neutral(k: str) -> bool:  # does nothing here, or absent from the record and at its default
    return terms.inert(k) or (k not in old and k in defaults
                              and new.get(k, missing) == defaults[k])

  return [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
          for k in sorted(set(old) | set(new))
          if not _may_change(k) and old.get(k, missing) != new.get(k, missing)
          and not neutral(k)]


def check(workdir: str, config: ml_collections.ConfigDict, terms: PartTerms = PartTerms()
          ) -> None:
  """Raises ConfigChangedError when WORKDIR/config.json records a run with another training
  config than `config`; a workdir without one passes."""
  path = os.path.join(workdir, CONFIG_JSON)
  if not os.path.exists(path):
    return
  diffs = changed_fields(files.read_json(path), config, terms)
  if diffs:
    shown = "; ".join(diffs[:6]) + (f"; ... ({len(diffs)} in all)" if len(diffs) > 6 else "")
    raise ConfigChangedError(
        f"{path} records a run with another config ({shown}); only "
        f"{', '.join(MAY_CHANGE[1:])} may change in one workdir: use the recorded values or a "
        "new workdir")


def write(workdir: str, config: ml_collections.ConfigDict, terms: PartTerms = PartTerms()
          ) -> None:
  os.makedirs(workdir, exist_ok=True)
  files.write_json(os.path.join(workdir, CONFIG_JSON), resolved(config, terms))
