"""Config validation: every rejection names the field, the value and what is allowed.

General checks live here; a registered part checks its own arguments (a dataset its section of
`config.data`, an encoder its `model.frame_encoder` / `model.backbone` sections, an evaluator
its `config.evals` entry), so adding a part never means editing this file.
"""

from __future__ import annotations

import ast

import ml_collections

from vidrec_jax import registry
from vidrec_jax import run_spec
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import check_needs
from vidrec_jax.config_checks import positive_int
from vidrec_jax.data import datasets
from vidrec_jax.data import ops
from vidrec_jax.data import video_io
from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.eval.evaluators import evaluator_kwargs
from vidrec_jax.models import encoders
from vidrec_jax.models import recommender
from vidrec_jax.models import text_tower
from vidrec_jax.models import user_towers
from vidrec_jax.models.user_towers import USER_TOWERS
from vidrec_jax.registry import Registry
from vidrec_jax.train import trainers
from vidrec_jax.train.trainers import TRAINERS

__all__ = ["ConfigError", "validate"]

MODES = ("train", "eval", "generate", "extract", "sweep", "rl", "recommend", "export")
DTYPES = ("float32", "bfloat16", "float16")


def _registered(registry: Registry, field: str, name) -> None:
  check(name in registry, field, name, f"registered: {', '.join(registry.names())}")


def _validate_data(c: ml_collections.ConfigDict) -> datasets.DatasetSource:
  d = c.data
  check("name" in d.dataset, "data.dataset", dict(d.dataset), "needs a `name`: a registered "
        f"dataset ({', '.join(datasets.DATASETS.names())})")
  _registered(datasets.DATASETS, "data.dataset.name", d.dataset.name)
  source = datasets.DATASETS.get(d.dataset.name)
  source.validate(d.dataset)
  check("layout" not in d.dataset or d.dataset.layout == "tfds" or c.mode == "generate",
        "data.dataset.layout", d.dataset.get("layout"), "'microlens' writes the world as a "
        "MicroLens release folder with --mode=generate only; train on it with "
        "--config.data.dataset.name=microlens --config.data.dataset.path=WORKDIR/data/microlens")
  for f in ("num_frames", "frame_size", "batch_size", "impressions_per_clip", "eval_batch_size",
            "read_threads", "prefetch_batches", "cache_frames"):
    positive_int(d[f], f"data.{f}")
  check(isinstance(d.num_workers, int) and d.num_workers >= 0, "data.num_workers",
        d.num_workers, "expected an integer >= 0")
  check(d.normalization in ops.NORMALIZATIONS, "data.normalization", d.normalization,
        f"allowed: {', '.join(ops.NORMALIZATIONS)}")
  check(d.frame_selection in video_io.SELECTIONS, "data.frame_selection", d.frame_selection,
        f"allowed: {', '.join(video_io.SELECTIONS)}")
  return source


def _validate_model(c: ml_collections.ConfigDict, source: datasets.DatasetSource) -> None:
  m = c.model
  _registered(recommender.MODELS, "model.name", m.name)
  _registered(USER_TOWERS, "model.user_tower.name", m.user_tower.name)
  user_towers.tower_args(m)  # the section's keys against the tower's typed arguments
  fe = m.frame_encoder.name
  check(fe == encoders.NONE or fe in encoders.FRAME_ENCODERS, "model.frame_encoder.name", fe,
        f"registered: {', '.join(encoders.FRAME_ENCODERS.names())}, {encoders.NONE}")
  if fe != encoders.NONE:
    cls = encoders.FRAME_ENCODERS.get(fe)
    kwargs = cls.config_kwargs(m)
    cls.validate(**kwargs)
    check_needs(c, cls.needs(**kwargs))
  if text_tower.uses_titles(m):
    _validate_text(c)
  for f in ("dtype", "param_dtype"):
    check(m[f] in DTYPES, f"model.{f}", m[f], f"allowed: {', '.join(DTYPES)}")
  for f in ("embed_dim", "vocab_pad_multiple"):
    positive_int(m[f], f"model.{f}")
  model = recommender.MODELS.get(m.name)
  model.validate(m, source)
  check_needs(c, model.needs(m, source))
  check(c.mode != "extract" or encoders.extracts_features(m) or encoders.reads_flow_cache(m)
        or text_tower.title_mode(m) == "cached", "mode", c.mode, "extract needs a pretrained "
        "backbone encoder (model.frame_encoder.name='backbone'), a two_stream flow stream with "
        "flow_source='cache' or a frozen text tower (something to cache)")


def _validate_text(c: ml_collections.ConfigDict) -> None:
  from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
  t = text_tower.TextArgs.from_config(c.model)
  _registered(text.TEXT_MODELS, "model.text.name", t.name)
  check(t.train_mode in text_tower.TRAIN_MODES, "model.text.train_mode", t.train_mode,
        f"allowed: {', '.join(text_tower.TRAIN_MODES)}")
  check(isinstance(t.max_length, int) and 2 <= t.max_length <= 512, "model.text.max_length",
        t.max_length, "an integer in [2, 512] (tokens, [CLS] and [SEP] included)")
  positive_int(t.top_layers, "model.text.top_layers")
  check(c.train.text_learning_rate_factor > 0, "train.text_learning_rate_factor",
        c.train.text_learning_rate_factor, "must be > 0")


def _validate_train(c: ml_collections.ConfigDict, source: datasets.DatasetSource) -> None:
  t = c.train
  _registered(TRAINERS, "train.trainer", t.trainer)
  trains = TRAINERS.get(t.trainer).models
  trainer = TRAINERS.get(t.trainer)
  settings = trainers.settings(c)
  trainer.validate(**settings)
  check_needs(c, trainer.needs(**settings))
  check(c.model.name in trains, "train.trainer", t.trainer,
        f"it trains the models {', '.join(trains)}, not model.name={c.model.name!r}")
  check(isinstance(t.early_stopping, int) and t.early_stopping >= 0, "train.early_stopping",
        t.early_stopping, "0 (off) or the number of evaluations without improvement to stop at")
  check(not t.early_stopping or (t.best_metric and t.eval_every > 0), "train.early_stopping",
        t.early_stopping, "needs train.best_metric and train.eval_every > 0")
  for f in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
    positive_int(t[f], f"train.{f}")
  check(t.learning_rate > 0, "train.learning_rate", t.learning_rate, "must be > 0")
  check(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "must be >= 0")
  check(t.grad_clip > 0, "train.grad_clip", t.grad_clip, "must be > 0")
  check(t.eval_every >= 0, "train.eval_every", t.eval_every, "0 (off) or a positive integer")
  check(t.best_mode in ("max", "min"), "train.best_mode", t.best_mode, "allowed: max, min")
  for name, entry in c.evals.items():
    check("type" in entry, f"evals.{name}", dict(entry), "needs a `type` naming an evaluator")
    _registered(EVALUATORS, f"evals.{name}.type", entry.type)
    cls = EVALUATORS.get(entry.type)
    check(c.model.name in cls.models, f"evals.{name}.type", entry.type,
          f"it evaluates the models {', '.join(cls.models)}, not model.name={c.model.name!r}")
    check(cls.history_users or not recommender.reads_history(c.model), f"evals.{name}.type",
          entry.type, "ranks the catalog by one vector per user, which the user tower "
          f"model.user_tower.name={c.model.user_tower.name!r} does not give (it reads each "
          "impression's watch history); use the 'id' user tower or drop this evaluator")
    cls.check(f"evals.{name}", source, **evaluator_kwargs(cls, name, entry))
  if TRAINERS.get(t.trainer).runs_experiment:
    return  # its experiment evaluates (and checks train.best_metric) itself
  valid_evaluated = any("splits" in e and "valid" in e.splits for e in c.evals.values())
  check(not t.best_metric or (t.best_metric.split("/")[0] == "valid" and valid_evaluated),
        "train.best_metric", t.best_metric, "must be '' (off) or a valid-split metric such as "
        "'valid/all/auc' with 'valid' among an evaluator's splits")


def _validate_mesh(c: ml_collections.ConfigDict) -> None:
  shape = dict(c.mesh.shape)
  check(set(shape) == {"data", "fsdp", "model"}, "mesh.shape", shape,
        "needs exactly the axes data, fsdp, model")
  check(all(isinstance(v, int) and (v > 0 or v == -1) for v in shape.values()), "mesh.shape",
        shape, "sizes must be positive integers, or -1 for one axis")
  check(list(shape.values()).count(-1) <= 1, "mesh.shape", shape, "at most one axis may be -1")


def serving_heads(model_cfg) -> tuple[str, ...]:
  """The ranker outputs a served model's fusion formula reads: the model's heads; the
  sequential model's one score (the user state's dot product with the item)."""
  return (("score",) if model_cfg.name in ("sequential", "policy")  # the RL policy's logits
          else tuple(model_cfg.heads))


def _validate_recommend(c: ml_collections.ConfigDict) -> None:
  """The `recommend` section and the models --mode=recommend / export serve (vidrec_jax/
  recommend.py); checked in those modes only, so a serving setting never blocks training."""
  from vidrec_jax.serving import fusion  # pylint: disable=g-import-not-at-top
  check(c.model.name in ("two_tower", "sequential", "policy"), "model.name", c.model.name,
        f"--mode={c.mode} serves the 'two_tower', 'sequential' and RL 'policy' models")
  r = c.recommend
  positive_int(r.k, "recommend.k")
  positive_int(r.candidates, "recommend.candidates")
  check(r.k <= r.candidates, "recommend.k", r.k,
        f"must be <= recommend.candidates={r.candidates} (the ranker sees only the candidates)")
  check(isinstance(r.exclude_watched, bool), "recommend.exclude_watched", r.exclude_watched,
        "True or False")
  from vidrec_jax.serving import retrieval  # pylint: disable=g-import-not-at-top
  check(r.retrieval in ("auto",) + retrieval.RETRIEVALS, "recommend.retrieval", r.retrieval,
        f"allowed: auto, {', '.join(retrieval.RETRIEVALS)}")
  check(isinstance(r.retrieval_target, float) and 0 < r.retrieval_target <= 1,
        "recommend.retrieval_target", r.retrieval_target, "a float in (0, 1]")
  check(isinstance(r.retrieval_queries, int) and r.retrieval_queries >= 2,
        "recommend.retrieval_queries", r.retrieval_queries, "an integer >= 2 (half tune the "
        "index, half measure it)")
  check(isinstance(r.thumbnails, int) and 0 <= r.thumbnails <= 512, "recommend.thumbnails",
        r.thumbnails, "an integer 0..512 (pixels; 0: none)")
  if r.retrieval not in ("exact", "auto"):
    module = {"faiss": "faiss", "faiss_hnsw": "faiss", "scann": "scann"}[r.retrieval]
    try:
      __import__(module)
    except ImportError:
      check(False, "recommend.retrieval", r.retrieval, f"needs the {module} package: "
            "pip install -e '.[ann]'")
  try:
    fusion.compile_formula(r.fusion, serving_heads(c.model))
  except fusion.FormulaError as e:
    check(False, "recommend.fusion", r.fusion, str(e))


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first bad value or combination."""
  check(config.mode in MODES, "mode", config.mode, f"allowed: {', '.join(MODES)}")
  try:
    registry.import_modules(config.imports)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  run_spec.resolve(config)  # every section has exactly its fields (what the run will see)
  source = _validate_data(config)
  _validate_model(config, source)
  _validate_train(config, source)
  _validate_mesh(config)
  if config.mode in ("recommend", "export"):
    _validate_recommend(config)
  if config.mode == "rl" or TRAINERS.get(config.train.trainer).runs_experiment:
    check(config.mode in ("rl", "train", "recommend", "export"), "mode", config.mode,
          "the RL experiment runs with --mode=rl (or train; a rerun evaluates finished "
          "policies without retraining them) and serves a trained policy with "
          "--mode=recommend / export --policy=NAME")
    from vidrec_jax.rl import config as rl_config  # pylint: disable=g-import-not-at-top
    rl_config.validate(run_spec.resolve(config))


def switch_dataset(config, overrides: list[tuple[str, str]]) -> None:
  """Points `config.data.dataset` at the dataset the overrides name (its section replaced by
  that dataset's default arguments when it is another one), then applies the other overrides;
  a bad one raises ValueError naming the flag."""
  name = [v for k, v in overrides if k == "name"][-1]
  if name != config.data.dataset.get("name"):
    source = datasets.DATASETS.get(name)  # an unknown name: UnknownNameError, one line
    if source.arguments is None:
      raise ValueError(f"--config.data.dataset.name={name}: a config switches to {name!r} only from a config "
                       f"file built on it (its arguments have no defaults): use one")
    config.data.dataset = ml_collections.ConfigDict(dict(name=name, **source.arguments))
  for key, text in overrides:
    node, *path = key.split(".")[::-1]
    section = config.data.dataset
    for part in reversed(path):
      section = section.get(part) if isinstance(section, ml_collections.ConfigDict) else None
    if not isinstance(section, ml_collections.ConfigDict) or node not in section:
      raise ValueError(f"--config.data.dataset.{key}: dataset {name!r} has no argument {key!r}; its "
                       f"arguments: {', '.join(sorted(config.data.dataset.keys()))}")
    section[node] = _typed(section[node], text, f"--config.data.dataset.{key}")


def _kind(value) -> str:
  return {int: "an integer", float: "a number", tuple: "a tuple", list: "a list"}.get(
      type(value), type(value).__name__)


def _typed(current, text: str, flag: str):
  """An override's text as the type of the field's current value."""
  if isinstance(current, str):
    return text
  if isinstance(current, bool):
    if text.lower() not in ("true", "false", "1", "0"):
      raise ValueError(f"{flag}={text}: expected true or false")
    return text.lower() in ("true", "1")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    raise ValueError(f"{flag}={text}: expected {_kind(current)}") from None
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
    value = type(current)(value)
  if current is not None and type(value) is not type(current):
    raise ValueError(f"{flag}={text}: expected {_kind(current)}")
  return value
