"""The config of record: the resolved config of a run is written to WORKDIR/config.json when
training starts; resuming (or evaluating) with a config that changes training is refused in one
line naming the changed fields.

What may change between runs in one workdir: the length of training (`train.steps`), logging,
evaluation and checkpoint cadence, the mesh (checkpoints restore onto any mesh), and how the
loaders read (worker, thread and prefetch counts change no number; tested). Everything else -
model, data, optimizer, seeds - defines the run.

A field added to the configs after a run was recorded is absent from that record. It is not a
change when the config gives it the value that does what the code did before the field existed
(ADDED_FIELDS), or when it is an option of a part that stays off (GATED_FIELDS: the flow
stream's settings while `model.frame_encoder.flow` is off). So a workdir of an older version
still resumes, evaluates and exports; any other value is refused like any change.
"""

from __future__ import annotations

import json
import os

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


# Field -> the value that reproduces the behaviour from before the field existed. Add a field
# here when it is added to the configs with such a value.
ADDED_FIELDS = {
    "model.frame_encoder.flow": False,
    "model.frame_encoder.input_dropout": 0.0,
    "model.frame_encoder.frame_average": False,
    "model.item_duration": False,
    "model.shared_affinity": False,
    "model.given_click": [],
    "model.backbone.whiten": 0,
    "model.backbone.whiten_flow": False,
    "train.loss_weights.watch_time_log": 0.1,  # its head's weight, as the configs give it
    "model.user_tower.kernel_init": "lecun_normal",  # SASRec's; the only init before it
}
# Field -> the ADDED_FIELDS field that switches on the part it configures.
GATED_FIELDS = {f"model.frame_encoder.{f}": "model.frame_encoder.flow"
                for f in ("flow_channels", "flow_size", "flow_source", "flow_stream")}


class ConfigChangedError(ValueError):
  """A workdir's run was trained with another config; the message is one line."""


def _flat(tree, prefix: str = "") -> dict:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def _may_change(field: str) -> bool:
  return any(field == f or field.startswith(f + ".") for f in MAY_CHANGE)


def resolved(config: ml_collections.ConfigDict) -> dict:
  """The config as JSON holds it (tuples become lists)."""
  return json.loads(config.to_json())


def changed_fields(saved: dict, config: ml_collections.ConfigDict) -> list[str]:
  """Fields outside MAY_CHANGE whose value differs, as 'field: old -> new'."""
  old, new = _flat(saved), _flat(resolved(config))
  missing = object()

  def neutral(k: str) -> bool:  # absent from the record, and set to do what the code did then
    gate = GATED_FIELDS.get(k)
    if gate is not None:
      return gate not in old and neutral(gate)
    return k in ADDED_FIELDS and k not in old and new.get(k, missing) == ADDED_FIELDS[k]

  return [f"{k}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}"
          for k in sorted(set(old) | set(new))
          if not _may_change(k) and old.get(k, missing) != new.get(k, missing)
          and not neutral(k)]


def check(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises ConfigChangedError when WORKDIR/config.json records a run with another training
  config than `config`; a workdir without one passes."""
  path = os.path.join(workdir, CONFIG_JSON)
  if not os.path.exists(path):
    return
  diffs = changed_fields(files.read_json(path), config)
  if diffs:
    shown = "; ".join(diffs[:6]) + (f"; ... ({len(diffs)} in all)" if len(diffs) > 6 else "")
    raise ConfigChangedError(
        f"{path} records a run with another config ({shown}); only "
        f"{', '.join(MAY_CHANGE[1:])} may change in one workdir: use the recorded values or a "
        "new workdir")


def write(workdir: str, config: ml_collections.ConfigDict) -> None:
  os.makedirs(workdir, exist_ok=True)
  files.write_json(os.path.join(workdir, CONFIG_JSON), resolved(config))
