"""What the two-tower model (models/two_tower.py) reads from the config, in one place: its typed
arguments (`arguments`), the inputs it needs (`input_spec`), the checks of the `model` section
and of what it needs from the dataset it trains on (`validate`: labels for its heads, durations,
clicks for a history; each part checks its own arguments, the rules between parts are here), and
how its config is recorded (`record_terms`: every part's signature defaults and the fields that
do nothing in this config).
"""

from __future__ import annotations

from flax import nnx

from vidrec_jax.config_checks import Needs
from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.config_checks import signature_defaults
from vidrec_jax.config_io import PartTerms
from vidrec_jax.data.datasets import DATASETS
from vidrec_jax.data.inputs import InputSpec
from vidrec_jax.models import encoders
from vidrec_jax.models import experts
from vidrec_jax.models import layers
from vidrec_jax.models import poolings
from vidrec_jax.models import sequential
from vidrec_jax.models import text_tower
from vidrec_jax.models import user_towers
from vidrec_jax.models.backbones.part import BackboneArgs
from vidrec_jax.models.heads import HEADS
from vidrec_jax.models.item_features import ITEM_FEATURES
from vidrec_jax.models.poolings import POOLINGS
from vidrec_jax.models.tasks import TASKS
from vidrec_jax.models.user_towers import reads_history

LOSS_WEIGHTINGS = ("fixed", "uncertainty")
# Clip keys an item feature may not take as its name: the pipeline's own.
RESERVED = ("video", "user", "mask", "valid", "weight", "content_type", "duration", "title_emb",
            "title_ids", "title_mask", "title_group")
# Arguments of the model that are built parts or come from the data, not config fields.
BUILT = ("num_videos", "user_tower", "frame_encoder", "titles", "history_content", "pooling_args",
         "dtype", "param_dtype", "rngs")


def arguments(cfg, num_users: int, num_videos: int, rngs: nnx.Rngs) -> dict:
  """The model's typed arguments from the `model` section, its parts built."""
  kw = dict(dtype=layers.as_dtype(cfg.dtype), param_dtype=layers.as_dtype(cfg.param_dtype),
            rngs=rngs)
  titles = (text_tower.TitleTower(text=text_tower.TextArgs.from_config(cfg),
                                  embed_dim=cfg.embed_dim, **kw)
            if text_tower.uses_titles(cfg) else None)
  return dict(
      num_videos=num_videos, embed_dim=cfg.embed_dim, hidden=cfg.hidden,
      use_video_id=cfg.use_video_id, id_dropout=cfg.id_dropout,
      position_bias=cfg.position_bias, max_positions=cfg.max_positions,
      vocab_pad_multiple=cfg.vocab_pad_multiple, retrieval_dim=cfg.retrieval_dim,
      heads=tuple(cfg.heads), trunk=dict(cfg.trunk), tasks=tuple(cfg.tasks),
      user_tower=user_towers.build(cfg, num_users, **kw),
      frame_encoder=encoders.build(cfg, **kw), pooling=cfg.pooling,
      pooling_args=poolings.pooling_args(cfg), titles=titles,
      history_content=(sequential.content_tables(cfg) if reads_history(cfg) else {}),
      content_types=tuple(cfg.content_types), loss_weighting=cfg.loss_weighting,
      given_click=tuple(cfg.given_click), item_duration=bool(cfg.item_duration),
      shared_affinity=bool(cfg.shared_affinity), item_features=tuple(cfg.item_features), **kw)


def input_spec(cfg) -> InputSpec:
  """What the input pipeline must deliver for the model of the `model` section."""
  labels = []
  for h in cfg.heads:
    labels += [c for c in HEADS.get(h).labels if c not in labels]
  return InputSpec(
      clip=encoders.clip_inputs(cfg), titles=text_tower.title_mode(cfg),
      query_view=any(TASKS.get(t).needs_query_view for t in cfg.tasks),
      impression=tuple(labels) + (("position",) if cfg.position_bias else ()),
      history=reads_history(cfg), log_q=any(TASKS.get(t).needs_log_q for t in cfg.tasks),
      content_type=bool(cfg.content_types), duration=bool(cfg.item_duration),
      item_features=tuple(cfg.item_features))


def record_terms(config, model_cls) -> PartTerms:
  """The signature default of every part argument the config may leave out (the model's own,
  the frame encoder's, the backbone's, the user tower's, the trunk's, the pooling's), and the
  fields that do nothing here: the loss weights of heads and tasks that are not trained, and
  the settings an encoder switches off (`FrameEncoder.inert_args`)."""
  m = config.model
  defaults = signature_defaults(model_cls.__init__, "model", BUILT)
  defaults.update(signature_defaults(BackboneArgs, "model.backbone"))
  inert = set()
  if m.frame_encoder.name != encoders.NONE:
    cls = encoders.FRAME_ENCODERS.get(m.frame_encoder.name)
    defaults.update(signature_defaults(cls.__init__, "model.frame_encoder", encoders.SUPPLIED))
    inert |= {f"model.frame_encoder.{a}" for a in cls.inert_args(**cls.config_kwargs(m))}
  defaults.update(signature_defaults(user_towers.tower_class(m).__init__, "model.user_tower",
                                     user_towers.SUPPLIED))
  defaults.update(signature_defaults(experts.TRUNKS.get(m.trunk.name).__init__, "model.trunk",
                                     experts.SUPPLIED))
  defaults.update(signature_defaults(POOLINGS.get(m.pooling).__init__, "model.pooling_args",
                                     poolings.SUPPLIED))
  active = set(m.heads) | set(m.tasks)

  def is_inert(field: str) -> bool:
    weight = field.startswith("train.loss_weights.")
    return field in inert or (weight and field.split(".", 2)[2] not in active)
  return PartTerms(defaults=defaults, inert=is_inert)


def validate(m, source) -> None:
  """Raises ConfigError on a bad `model` section `m` for this model on dataset `source`."""
  if reads_history(m):
    check(not source.label_columns or "click" in source.label_columns, "model.user_tower",
          m.user_tower.name, "a watch history is built from the dataset's clicks")
  check(m.pooling in POOLINGS, "model.pooling", m.pooling,
        f"registered: {', '.join(POOLINGS.names())}")
  poolings.pooling_args(m)
  check(len(m.heads) > 0 and all(h in HEADS for h in m.heads), "model.heads",
        tuple(m.heads), f"a non-empty subset of: {', '.join(HEADS.names())}")
  for group in {HEADS.get(h).exclusive_group for h in m.heads} - {None}:
    same = [n for n, cls in HEADS.items() if cls.exclusive_group == group]
    check(len([h for h in m.heads if h in same]) <= 1, "model.heads", tuple(m.heads),
          f"at most one head of the {group!r} group ({', '.join(same)})")
  fe = m.frame_encoder.name
  check(all(t in TASKS for t in m.tasks) and len(set(m.tasks)) == len(m.tasks),
        "model.tasks", tuple(m.tasks), f"distinct retrieval tasks from: "
        f"{', '.join(TASKS.names())}")
  content_tasks = [t for t in m.tasks if not TASKS.get(t).needs_labels]
  check(not content_tasks or fe != encoders.NONE, "model.tasks", tuple(m.tasks),
        f"retrieval tasks {', '.join(content_tasks)} need a content tower "
        "(model.frame_encoder.name other than 'none')")
  for t in m.tasks:
    missing = [h for h in TASKS.get(t).needs_labels if h not in m.heads]
    check(not missing, "model.tasks", tuple(m.tasks),
          f"task {t!r} trains on the labels of head(s) {', '.join(missing)}: add them to "
          "model.heads")
  check(fe != encoders.NONE or m.use_video_id, "model.use_video_id", m.use_video_id,
        "must be True when model.frame_encoder.name='none' (the item tower needs an input)")
  check(0.0 <= m.id_dropout < 1.0, "model.id_dropout", m.id_dropout,
        "allowed: 0 <= value < 1")
  types = tuple(m.content_types)
  check(all(isinstance(t, str) and t for t in types) and len(set(types)) == len(types),
        "model.content_types", types, "distinct non-empty names (e.g. movie, series, news)")
  experts.validate(dict(m.trunk))
  given = tuple(m.given_click)
  may = [n for n, cls in HEADS.items() if cls.given_click_ok]
  check(all(h in may and h in m.heads for h in given)
        and len(set(given)) == len(given) and (not given or "click" in m.heads),
        "model.given_click", given, f"distinct heads of model.heads among "
        f"{', '.join(may)}, with the click head in model.heads")
  features = tuple(m.item_features)
  check(all(f in ITEM_FEATURES for f in features) and len(set(features)) == len(features)
        and not set(features) & set(RESERVED), "model.item_features", features,
        f"distinct registered item features: {', '.join(ITEM_FEATURES.names()) or 'none'}")
  check(m.loss_weighting in LOSS_WEIGHTINGS, "model.loss_weighting", m.loss_weighting,
        f"allowed: {', '.join(LOSS_WEIGHTINGS)}")
  for f in ("hidden", "retrieval_dim", "max_positions"):
    positive_int(m[f], f"model.{f}")


def needs(m, source) -> Needs:
  """What the model section `m` needs of the others on dataset `source`: a history window its
  user tower holds, the label columns of its heads and the durations of its duration input
  (both named with the dataset), and a loss weight for every head and task."""
  out: Needs = []
  if reads_history(m):
    limit = user_towers.history_limit(m)
    out.append(("data.history.max_len", lambda n: check(
        limit is None or limit >= n, "model.user_tower.max_len", limit,
        f"must be >= data.history.max_len={n}")))

  def dataset(name: str) -> None:
    for h in m.heads:
      missing = [col for col in HEADS.get(h).labels if col not in source.label_columns]
      check(not missing, "model.heads", tuple(m.heads),
            f"head {h!r} needs label column(s) {', '.join(missing)} that dataset {name!r} does "
            f"not have (it has: {', '.join(source.label_columns) or 'none'})")
    check(not m.item_duration or source.durations, "model.item_duration", True,
          f"dataset {name!r} does not know its videos' durations (datasets that do: "
          f"{', '.join(n for n in DATASETS.names() if DATASETS.get(n).durations)})")

  def loss_weights(weights) -> None:
    for name in tuple(m.heads) + tuple(m.tasks):
      check(name in weights, "train.loss_weights", dict(weights),
            f"needs a weight for every head and task ({name!r} missing)")
  return out + [("data.dataset.name", dataset), ("train.loss_weights", loss_weights)]
