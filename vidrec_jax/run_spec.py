"""The run's settings, resolved once: `resolve(config)` turns the ConfigDict of a config file (as
main and the sweep parse it, after vidrec_jax/validate.py has checked it) into frozen, typed
objects, and everything below the entry points takes these instead of the ConfigDict.

  RunSpec      seed, mode, imports, and one object per section
  DataSpec     `data`: loader, clip and cache settings (`history` a HistorySpec); `dataset`
               stays a Section, typed by the dataset that reads it
  TrainSpec    `train`: optimizer, schedule, cadence, loss weights, the trainer and its settings
  MeshSpec     `mesh`: axis sizes and logical-axis rules
  RecommendSpec `recommend`: serving list length, candidates, fusion formula
  Section      an immutable mapping with attribute access, for the sections whose fields are the
               arguments of registered parts (`model`, `data.dataset`, `evals`, `rl`, `sweep`):
               each part types its own arguments from its signature (config_checks.typed_kwargs).

Nothing here can be changed in place: a variant of a run (an RL seed, a policy's correction) is
`dataclasses.replace` / `Section.replace`, so no part sees a setting another part changed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

from vidrec_jax.config_checks import ConfigError


class Section(Mapping[str, Any]):
  """A frozen config section: `s.field` or `s["field"]`, nested sections are Sections, lists
  become tuples. `to_dict()` gives the plain dict back; `replace(field=value)` a changed copy."""

  __slots__ = ("_items",)

  def __init__(self, items: Mapping[str, Any] = ()):
    object.__setattr__(self, "_items", {str(k): freeze(v) for k, v in dict(items).items()})

  def __getattr__(self, name: str) -> Any:
    if name.startswith("__"):
      raise AttributeError(name)
    items = object.__getattribute__(self, "_items")
    if name not in items:
      raise AttributeError(f"config section has no field {name!r} (fields: {', '.join(items)})")
    return items[name]

  def __setattr__(self, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot set {name!r}: config sections are frozen")

  def __getitem__(self, key: str) -> Any:
    return self._items[key]

  def __iter__(self) -> Iterator[str]:
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)

  def __hash__(self) -> int:
    return hash(tuple(self._items.items()))

  def __repr__(self) -> str:
    return f"Section({self.to_dict()!r})"

  def __reduce__(self):
    return Section, (self.to_dict(),)

  def __deepcopy__(self, memo) -> "Section":
    return self

  def to_dict(self) -> dict:
    return {k: thaw(v) for k, v in self._items.items()}

  def replace(self, **changes: Any) -> "Section":
    unknown = sorted(set(changes) - set(self._items))
    if unknown:
      raise ConfigError(f"config section has no field(s) {', '.join(unknown)}")
    return Section({**self._items, **changes})


def freeze(value: Any) -> Any:
  """Mappings (a ConfigDict's sections included) -> Section, lists and tuples -> tuples."""
  if isinstance(value, Section):
    return value
  if hasattr(value, "items") and hasattr(value, "keys"):
    return Section(value)
  if isinstance(value, (list, tuple)):
    return tuple(freeze(v) for v in value)
  return value


def thaw(value: Any) -> Any:
  """The plain value of a frozen one (dicts; tuples stay tuples, as a ConfigDict holds them)."""
  if isinstance(value, Section):
    return value.to_dict()
  if dataclasses.is_dataclass(value):
    return {f.name: thaw(getattr(value, f.name)) for f in dataclasses.fields(value)}
  if isinstance(value, tuple):
    return tuple(thaw(v) for v in value)
  return value


@dataclasses.dataclass(frozen=True)
class HistorySpec:
  """`data.history`: the watch-history window of history user towers and next-item training."""

  max_len: int
  stride: int


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """`data`: how examples are read, cut into clips and batched, and where the caches are."""

  dataset: Section  # the registered dataset's arguments (`name` and its own fields)
  batch_size: int
  eval_batch_size: int
  shuffle_seed: int
  num_frames: int
  frame_size: int
  normalization: str
  impressions_per_clip: int
  cache_videos: int
  cache_frames: int
  frame_selection: str
  num_workers: int
  read_threads: int
  prefetch_batches: int
  data_dir: str
  feature_cache: str
  text_cache: str
  flow_cache: str
  history: HistorySpec


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """`train`: the trainer and its settings, optimizer, schedule, cadence and loss weights."""

  trainer: str
  trainer_args: Section
  steps: int
  learning_rate: float
  warmup_steps: int
  end_learning_rate_factor: float
  weight_decay: float
  grad_clip: float
  backbone_learning_rate_factor: float
  text_learning_rate_factor: float
  softmax: str
  loss_weights: Section
  log_every: int
  eval_every: int
  checkpoint_every: int
  keep_checkpoints: int
  best_metric: str
  best_mode: str
  early_stopping: int

  def learning_rate_factor(self, field: str) -> float:
    """A pretrained part's learning-rate factor, by the field that sets it
    (checkpoints/parts.py `Part.lr_factor`)."""
    value = getattr(self, field, None)
    if not isinstance(value, (int, float)) or not field.endswith("learning_rate_factor"):
      raise ConfigError(f"train.{field} is not a learning-rate factor of this trainer")
    return float(value)


@dataclasses.dataclass(frozen=True)
class MeshSpec:
  """`mesh`: axis sizes (`data`, `fsdp`, `model`; -1 takes the rest) and logical-axis rules."""

  shape: Section
  rules: tuple


@dataclasses.dataclass(frozen=True)
class RecommendSpec:
  """`recommend`: list length, candidates retrieved for the ranker, the fusion formula, and
  whether a history tower's lists leave out the history's videos."""

  k: int
  candidates: int
  fusion: str
  exclude_watched: bool
  retrieval: str
  retrieval_target: float
  retrieval_queries: int
  thumbnails: int


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """A run's settings, resolved from its config file and overrides."""

  seed: int
  mode: str
  imports: tuple[str, ...]
  data: DataSpec
  train: TrainSpec
  mesh: MeshSpec
  model: Section  # the registered model's arguments; each part types its own
  evals: Section  # name -> an evaluator's `type` and arguments
  recommend: RecommendSpec
  sweep: Section
  rl: Section | None = None  # the RL experiment's section (configs/rl.py), when present

  def to_dict(self) -> dict:
    out = thaw(self)
    if out["rl"] is None:
      del out["rl"]
    return out


def typed(cls, section: Any, where: str, **nested) -> Any:
  """The frozen dataclass `cls` from a config section (`where`, for errors): every field of `cls`
  and no other (a ConfigError naming the missing and unknown ones), values frozen; `nested`
  builds sub-objects from their sections."""
  given = set(section.keys())
  names = [f.name for f in dataclasses.fields(cls)]
  missing, unknown = sorted(set(names) - given), sorted(given - set(names))
  if missing or unknown:
    raise ConfigError(f"config.{where}: " + "; ".join(
        p for p in (f"missing field(s) {', '.join(missing)}" if missing else "",
                    f"unknown field(s) {', '.join(unknown)}" if unknown else "") if p)
                      + f" (allowed: {', '.join(names)})")
  values = {n: freeze(section[n]) for n in names}
  values.update({n: build(section[n]) for n, build in nested.items()})
  return cls(**values)


def resolve(config: Any) -> RunSpec:
  """The typed, frozen settings of a (validated) ConfigDict."""
  raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  top = {"seed", "mode", "imports", "data", "train", "mesh", "model", "evals", "recommend",
         "sweep", "rl"}
  unknown = sorted(set(raw) - top)
  if unknown:
    raise ConfigError(f"config: unknown section(s) {', '.join(unknown)} (allowed: "
                      f"{', '.join(sorted(top))})")
  data = typed(DataSpec, raw["data"], "data",
               history=lambda h: typed(HistorySpec, h, "data.history"))
  return RunSpec(
      seed=int(raw["seed"]), mode=str(raw["mode"]), imports=tuple(raw["imports"]), data=data,
      train=typed(TrainSpec, raw["train"], "train"),
      mesh=typed(MeshSpec, raw["mesh"], "mesh"), model=Section(raw["model"]),
      evals=Section(raw["evals"]),
      recommend=typed(RecommendSpec, raw["recommend"], "recommend"),
      sweep=Section(raw["sweep"]),
      rl=Section(raw["rl"]) if "rl" in raw else None)
