"""Config validation: every rejection names the field, the value and what is allowed."""

from __future__ import annotations

import ml_collections

from vidrec_jax.data import ops
from vidrec_jax.data import titles
from vidrec_jax.data import world as world_lib
from vidrec_jax.models import backbone_encoder
from vidrec_jax.models import backbones
from vidrec_jax.models import encoders
from vidrec_jax.models import heads
from vidrec_jax.models import recommender

MODES = ("train", "eval", "generate", "extract")
DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
  """A bad config value; str() is one line."""


def _check(ok: bool, field: str, value, allowed: str) -> None:
  if not ok:
    raise ConfigError(f"config.{field}={value!r} is not allowed; {allowed}")


def _positive_int(c, field: str) -> None:
  v = c
  for part in field.split("."):
    v = v[part]
  _check(isinstance(v, int) and v > 0, field, v, "expected a positive integer")


TEXT_TRAIN_MODES = ("frozen", "top_layers", "full")


def _validate_text(c: ml_collections.ConfigDict) -> None:
  m = c.model
  _check(all(t in recommender.TASKS for t in m.tasks) and len(set(m.tasks)) == len(m.tasks),
         "model.tasks", tuple(m.tasks),
         f"a subset of the retrieval tasks: {', '.join(recommender.TASKS)}")
  _check(not m.tasks or m.frame_encoder.name != "none", "model.tasks", tuple(m.tasks),
         "retrieval tasks need a content tower (model.frame_encoder.name other than 'none')")
  for task in m.tasks:
    _check(task in c.train.loss_weights, "train.loss_weights", dict(c.train.loss_weights),
           f"needs a weight for every task in model.tasks ({task!r} missing)")
  if m.tasks:
    _positive_int(c, "model.retrieval_dim")
  if not titles.uses_text(m):
    return
  t = m.text
  from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
  _check(t.name in text.TEXT_MODELS, "model.text.name", t.name,
         f"registered: {', '.join(sorted(text.TEXT_MODELS))}")
  _check(t.train_mode in TEXT_TRAIN_MODES, "model.text.train_mode", t.train_mode,
         f"allowed: {', '.join(TEXT_TRAIN_MODES)}")
  _check(isinstance(t.max_length, int) and 2 <= t.max_length <= 512, "model.text.max_length",
         t.max_length, "an integer in [2, 512] (tokens, [CLS] and [SEP] included)")
  _positive_int(c, "model.text.top_layers")


def _validate_backbone(c: ml_collections.ConfigDict) -> None:
  m, d = c.model, c.data
  _check("backbone" in m, "model.backbone", None,
         "model.frame_encoder.name='backbone' needs a model.backbone section (see "
         "configs/pretrained.py)")
  b = m.backbone
  _check(b.name in backbones.BACKBONES, "model.backbone.name", b.name,
         f"registered: {', '.join(sorted(backbones.BACKBONES))}")
  allowed = backbones.abstract(b.name).outputs_allowed()
  _check(len(b.outputs) > 0 and all(o in allowed for o in b.outputs), "model.backbone.outputs",
         tuple(b.outputs), f"a non-empty subset of the spatial outputs: {', '.join(allowed)}")
  _check(b.train_mode in backbone_encoder.TRAIN_MODES, "model.backbone.train_mode",
         b.train_mode, f"allowed: {', '.join(backbone_encoder.TRAIN_MODES)}")
  _positive_int(c, "model.backbone.grid")
  _positive_int(c, "model.backbone.top_blocks")
  _positive_int(c, "model.backbone.extract_batch_size")
  if "cache_frames" in d:
    _positive_int(c, "data.cache_frames")
  _check(not b.from_cache or b.train_mode == "frozen", "model.backbone.from_cache",
         b.from_cache, "cached features need model.backbone.train_mode='frozen'")
  td = m.frame_encoder.get("temporal_difference", "none")
  _check(td in backbone_encoder.TEMPORAL_DIFFERENCES, "model.frame_encoder.temporal_difference",
         td, f"allowed: {', '.join(backbone_encoder.TEMPORAL_DIFFERENCES)}")
  _check(td != "adjacent" or b.from_cache or d.motion, "data.motion", d.motion,
         "must be True for temporal_difference='adjacent' from pixels (the next frame is "
         "frame + the pipeline's RGB difference)")
  need = backbones.BACKBONES[b.name].normalization
  _check(d.normalization == need, "data.normalization", d.normalization,
         f"{b.name} was trained on inputs normalised as {need!r}")
  _check(c.train.get("backbone_learning_rate_factor", 1.0) > 0,
         "train.backbone_learning_rate_factor", c.train.get("backbone_learning_rate_factor"),
         "must be > 0")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first bad value or combination."""
  c = config
  _check(c.mode in MODES, "mode", c.mode, f"allowed: {', '.join(MODES)}")
  w = c.data.world
  for f in ("num_users", "num_videos", "num_topics", "min_frames", "max_frames", "resolution",
            "fps", "slates_per_user", "slate_size"):
    _positive_int(c, f"data.world.{f}")
  _check(w.min_frames <= w.max_frames, "data.world.min_frames", w.min_frames,
         f"must be <= data.world.max_frames={w.max_frames}")
  _check(w.resolution % 2 == 0, "data.world.resolution", w.resolution,
         "must be even (H.264 with yuv420p needs even sizes)")
  _check(1 <= w.num_palettes <= len(world_lib.PALETTE), "data.world.num_palettes",
         w.num_palettes, f"allowed: 1..{len(world_lib.PALETTE)}")
  _check(0.0 <= w.cold_fraction < 1.0, "data.world.cold_fraction", w.cold_fraction,
         "allowed: 0 <= value < 1")
  _check(0.0 < w.train_until < w.valid_until < 1.0, "data.world.train_until", w.train_until,
         f"need 0 < train_until < valid_until={w.valid_until} < 1")
  _check(0.0 <= w.label_noise < 0.5, "data.world.label_noise", w.label_noise,
         "allowed: 0 <= value < 0.5")
  _check(set(w.format_weights) <= set(world_lib.FORMATS), "data.world.format_weights",
         dict(w.format_weights), f"keys allowed: {', '.join(world_lib.FORMATS)}")
  _check(w.slate_size <= w.num_videos * (1 - w.cold_fraction), "data.world.slate_size",
         w.slate_size, "must not exceed the number of warm videos")
  d = c.data
  for f in ("num_frames", "frame_size", "batch_size", "impressions_per_clip", "eval_batch_size",
            "read_threads",
            "prefetch_batches"):
    _positive_int(c, f"data.{f}")
  _check(isinstance(d.num_workers, int) and d.num_workers >= 0, "data.num_workers",
         d.num_workers, "expected an integer >= 0")
  _check(d.normalization in ops.NORMALIZATIONS, "data.normalization", d.normalization,
         f"allowed: {', '.join(ops.NORMALIZATIONS)}")
  m = c.model
  _check(m.name in recommender.MODELS, "model.name", m.name,
         f"registered: {', '.join(sorted(recommender.MODELS))}")
  fe = m.frame_encoder.name
  _check(fe == "none" or fe in encoders.FRAME_ENCODERS, "model.frame_encoder.name", fe,
         f"registered: {', '.join(sorted(encoders.FRAME_ENCODERS))}, none")
  _check(fe == "none" or m.frame_encoder.motion == d.motion, "model.frame_encoder.motion",
         m.frame_encoder.motion, f"must equal data.motion={d.motion} (the pipeline makes the "
         "motion input)")
  _check(m.pooling in encoders.POOLINGS, "model.pooling", m.pooling,
         f"registered: {', '.join(sorted(encoders.POOLINGS))}")
  _check(len(m.heads) > 0 and all(h in heads.HEADS for h in m.heads), "model.heads", m.heads,
         f"a non-empty subset of: {', '.join(sorted(heads.HEADS))}")
  _check(fe != "none" or m.use_video_id, "model.use_video_id", m.use_video_id,
         "must be True when model.frame_encoder.name='none' (the item tower needs an input)")
  if fe == "backbone":
    _validate_backbone(c)
  _validate_text(c)
  _check(c.mode != "extract" or fe == "backbone" or titles.from_cache(m), "mode", c.mode,
         "extract needs model.frame_encoder.name='backbone' or a frozen text tower "
         "(something pretrained to run)")
  _check(0.0 <= m.id_dropout < 1.0, "model.id_dropout", m.id_dropout, "allowed: 0 <= value < 1")
  for f in ("dtype", "param_dtype"):
    _check(m[f] in DTYPES, f"model.{f}", m[f], f"allowed: {', '.join(DTYPES)}")
  _positive_int(c, "model.embed_dim")
  _positive_int(c, "model.vocab_pad_multiple")
  t = c.train
  for f in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
    _positive_int(c, f"train.{f}")
  _check(t.learning_rate > 0, "train.learning_rate", t.learning_rate, "must be > 0")
  _check(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "must be >= 0")
  _check(t.grad_clip > 0, "train.grad_clip", t.grad_clip, "must be > 0")
  _check(t.eval_every >= 0, "train.eval_every", t.eval_every, "0 (off) or a positive integer")
  _check(t.best_mode in ("max", "min"), "train.best_mode", t.best_mode, "allowed: max, min")
  _check(not t.best_metric or (t.best_metric.split("/")[0] == "valid" and "valid" in c.eval.splits),
         "train.best_metric", t.best_metric,
         "must be '' (off) or a valid-split metric such as 'valid/all/auc' with 'valid' in "
         "eval.splits")
  for h in m.heads:
    _check(h in t.loss_weights, "train.loss_weights", dict(t.loss_weights),
           f"needs a weight for every head in model.heads ({h!r} missing)")
  shape = dict(c.mesh.shape)
  _check(set(shape) == {"data", "fsdp", "model"}, "mesh.shape", shape,
         "needs exactly the axes data, fsdp, model")
  _check(all(isinstance(v, int) and (v > 0 or v == -1) for v in shape.values()), "mesh.shape",
         shape, "sizes must be positive integers, or -1 for one axis")
  _check(list(shape.values()).count(-1) <= 1, "mesh.shape", shape, "at most one axis may be -1")
  for split in c.eval.splits:
    _check(split in world_lib.SPLITS, "eval.splits", c.eval.splits,
           f"allowed: {', '.join(world_lib.SPLITS)}")
