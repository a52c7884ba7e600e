"""The training loop and the evaluate entry: data -> mesh -> sharded state -> steps -> eval."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging
from jax.experimental import multihost_utils

from vidrec_jax.data import features
from vidrec_jax.data import generate
from vidrec_jax.data import pipeline
from vidrec_jax.data import titles as titles_lib
from vidrec_jax.eval import evaluator as evaluator_lib
from vidrec_jax.models.partitioning import activation_sharding
from vidrec_jax.train import checkpointing
from vidrec_jax.train import distributed
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps
from vidrec_jax.train.state import Setup


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf; the message names the step."""


@dataclasses.dataclass
class Context:
  """What both training and evaluation need: data handles, vocabularies, mesh and setup."""

  config: ml_collections.ConfigDict
  workdir: str
  data_dir: str
  catalog: pipeline.Catalog
  user_vocab: pipeline.Vocab
  video_vocab: pipeline.Vocab
  train_video_ids: np.ndarray  # video id of every train record, in record order
  setup: Setup
  features_dir: str  # the backbone feature cache (used when the config trains from it)
  text_dir: str  # the title embedding cache (used by a frozen text tower)

  @functools.cached_property
  def titles(self):
    """Title inputs (cached embeddings or tokens), built once for training and evaluation;
    None when the model reads no titles."""
    return pipeline.title_inputs(self.config, self.catalog, self.text_dir)

  @property
  def host0(self) -> bool:
    return jax.process_index() == 0

  def evaluator(self) -> evaluator_lib.Evaluator:
    return evaluator_lib.Evaluator(self.setup, self.data_dir, self.catalog, self.user_vocab,
                                   self.video_vocab, show_progress=self.host0,
                                   features_dir=self.features_dir, titles=self.titles)

  def checkpointer(self) -> checkpointing.Checkpointer:
    t = self.config.train
    return checkpointing.Checkpointer(os.path.join(self.workdir, "checkpoints"),
                                      t.checkpoint_every, t.keep_checkpoints, t.best_metric,
                                      t.best_mode)


def data_dir_of(config: ml_collections.ConfigDict, workdir: str) -> str:
  return config.data.data_dir or os.path.join(workdir, "data")


def features_dir_of(config: ml_collections.ConfigDict, workdir: str) -> str:
  return config.data.get("feature_cache") or os.path.join(workdir, "features")


def text_dir_of(config: ml_collections.ConfigDict, workdir: str) -> str:
  return config.data.get("text_cache") or os.path.join(workdir, "text_features")


def ensure_text_cache(config: ml_collections.ConfigDict, catalog: pipeline.Catalog,
                      text_dir: str) -> None:
  """Host 0 embeds the catalog's titles when a frozen text tower needs them and the cache is
  missing or stale; the other processes wait for it."""
  if not titles_lib.from_cache(config.model):
    return
  if jax.process_index() == 0:
    titles_lib.extract(config, catalog.title, text_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("vidrec_text_cache_ready")


def world_catalog(config: ml_collections.ConfigDict, data_dir: str,
                  generate_data: bool = True) -> pipeline.Catalog:
  """The catalog of the world in data_dir; host 0 generates the world first when it is ours
  and missing, the other processes wait for it."""
  if generate_data and jax.process_index() == 0 and not config.data.data_dir:
    generate.ensure(data_dir, config.data.world)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("vidrec_world_ready")
  return pipeline.Catalog.load(data_dir)


def make_context(config: ml_collections.ConfigDict, workdir: str, mesh=None,
                 generate_data: bool = True) -> Context:
  data_dir = data_dir_of(config, workdir)
  catalog = world_catalog(config, data_dir, generate_data)
  train_cols = pipeline.read_columns(pipeline.open_source(data_dir, "impressions", "train"))
  # Vocabularies come from the training split only: anything else is out-of-vocabulary.
  user_vocab = pipeline.Vocab(train_cols["user_id"], int(train_cols["user_id"].max()))
  video_vocab = pipeline.Vocab(train_cols["video_id"], len(catalog) - 1)
  features_dir = features_dir_of(config, workdir)
  if pipeline.uses_feature_cache(config):
    from vidrec_jax.train import extract  # pylint: disable=g-import-not-at-top
    if generate_data and not config.data.get("feature_cache") and not os.path.exists(
        os.path.join(features_dir, features.META)):
      logging.info("no feature cache in %s yet: extracting it first", features_dir)
      extract.extract(config, workdir, data_dir, features_dir)
    features.check_meta(features_dir, extract.expected_meta(config))
  text_dir = text_dir_of(config, workdir)
  if generate_data:
    ensure_text_cache(config, catalog, text_dir)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh)
  setup = Setup(config, user_vocab.size, video_vocab.size, mesh)
  return Context(config, workdir, data_dir, catalog, user_vocab, video_vocab,
                 train_cols["video_id"], setup, features_dir, text_dir)


def _log_start(ctx: Context) -> None:
  s = ctx.setup
  logging.info("config:\n%s", ctx.config)
  logging.info("mesh %s over %d devices (%d per process, %d processes)", dict(s.mesh.shape),
               s.mesh.size, jax.local_device_count(), jax.process_count())
  logging.info("users %d, training videos %d (+1 OOV row), catalog %d videos",
               ctx.user_vocab.size, ctx.video_vocab.size, len(ctx.catalog))
  logging.info("parameters:\n%s",
               mesh_lib.param_table(s.abstract_state.params, s.param_shardings))


class _Summaries:
  """TensorBoard event files (tensorboardX, no TensorFlow) written by host 0 only."""

  def __init__(self, workdir: str, enabled: bool):
    self.writer = None
    if enabled:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self.writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict) -> None:
    if self.writer is None:
      return
    for k, v in scalars.items():
      if np.isfinite(v):
        self.writer.add_scalar(k.replace("@", "_at_"), v, step)
    self.writer.flush()

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


def _check_finite(window: list[dict], first_step: int) -> list[dict]:
  """The window's metrics on the host, or NonFiniteLossError naming the first bad step (the
  window holds the steps after `first_step`)."""
  host = jax.device_get(window)
  losses = np.array([m["loss"] for m in host])
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise NonFiniteLossError(f"loss is {losses[bad[0]]} at step {first_step + int(bad[0]) + 1}; "
                             "stopping (the last checkpoint is intact)")
  return host


def _reduce(window: list[dict], first_step: int) -> dict[str, float]:
  host = _check_finite(window, first_step)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def train(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (resuming from the latest checkpoint in workdir), then evaluates; returns metrics."""
  ctx = make_context(config, workdir)
  setup, t = ctx.setup, config.train
  if ctx.host0:
    _log_start(ctx)
  ckpt = ctx.checkpointer()
  restored = ckpt.restore(setup.abstract_state)
  if restored is None:
    state, start = setup.init(config.seed), 0
  else:
    state, start = restored.state, restored.step

  def position(step: int) -> dict:
    return checkpointing.data_position(step, config.data.batch_size, config.data.shuffle_seed)

  first_batch = checkpointing.check_data_position(restored and restored.data, position(start))
  data_iter = iter(pipeline.train_dataset(
      config, ctx.data_dir, ctx.catalog, ctx.user_vocab, ctx.video_vocab, ctx.train_video_ids,
      jax.process_index(), jax.process_count(), ctx.features_dir, start_batch=first_batch,
      titles=ctx.titles))
  train_step = jax.jit(functools.partial(steps.train_step, setup),
                       in_shardings=(setup.state_shardings, None),
                       out_shardings=(setup.state_shardings, None), donate_argnums=(0,))
  summaries = _Summaries(workdir, ctx.host0)
  evaluator = ctx.evaluator()
  bad_videos: set[int] = set()
  window, window_start, t0, examples = [], start, time.time(), 0
  bar = tqdm.tqdm(total=t.steps, initial=start, desc="train", disable=not ctx.host0,
                  mininterval=2.0)
  preemption = distributed.Preemption()
  try:
    for step in range(start + 1, t.steps + 1):
      batch = next(data_iter)
      invalid = batch["valid"] == 0
      if invalid.any():
        new = set(batch["video_id"][invalid].tolist()) - bad_videos
        for v in sorted(new):
          logging.warning("training skips examples of undecodable video %s", ctx.catalog.path(v))
        bad_videos |= new
      with activation_sharding(setup.mesh, setup.rules):
        state, metrics = train_step(state, mesh_lib.shard_batch(batch, setup.mesh, setup.rules))
      window.append(metrics)
      examples += float(batch["weight"].sum()) * jax.process_count()
      bar.update(1)
      if step % t.log_every == 0 or step == t.steps:
        scalars = _reduce(window, window_start)
        scalars["impressions_per_second"] = examples / max(time.time() - t0, 1e-9)
        scalars["skipped_videos"] = float(len(bad_videos))
        window, window_start, t0, examples = [], step, time.time(), 0
        if ctx.host0:
          summaries.write(step, scalars)
          bar.set_postfix(loss=f"{scalars['loss']:.4f}")
          logging.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in
                                                      sorted(scalars.items())))
      stop = preemption.should_stop()
      if stop or step == t.steps or ckpt.manager.should_save(step):
        _check_finite(window, window_start)  # never save the state of a NaN step
      if stop:
        ckpt.save(step, state, position(step), force=True)
        ckpt.wait()
        logging.warning("preempted: saved step %d in %s; rerun the same command to resume",
                        step, os.path.join(workdir, "checkpoints"))
        return {"preempted_at_step": float(step)}
      ckpt.save(step, state, position(step), force=step == t.steps)
      if t.eval_every and step % t.eval_every == 0 and step != t.steps:
        valid = evaluator.evaluate(state.params, ("valid",))
        ckpt.save_best(step, state, valid)
        summaries.write(step, valid)
        if ctx.host0:
          logging.info("step %d eval:\n%s", step, evaluator_lib.format_table(valid))
    results = evaluator.evaluate(state.params)
    ckpt.save_best(t.steps, state, results)
  finally:
    preemption.close()
    bar.close()
    ckpt.close()
  if ckpt.best_metric and ctx.host0:
    logging.info("best checkpoint by %s: step %s in %s", ckpt.best_metric, ckpt.best_step(),
                 checkpointing.best_directory(ckpt.directory))
  results["train/skipped_videos"] = float(len(bad_videos))
  finish_eval(ctx, results, summaries, t.steps)
  summaries.close()
  return results


def finish_eval(ctx: Context, results: dict, summaries, step: int) -> None:
  if not ctx.host0:
    return
  out_dir = os.path.join(ctx.workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump({k: (None if not np.isfinite(v) else v) for k, v in sorted(results.items())}, f,
              indent=1)
  if summaries is not None:
    summaries.write(step, results)
  print(evaluator_lib.format_table(results), flush=True)
  print(f"metrics written to {os.path.join(out_dir, 'metrics.json')}", flush=True)


def evaluate(config: ml_collections.ConfigDict, workdir: str, which: str = "latest"
             ) -> dict[str, float]:
  """Restores the latest (or, with which='best', the best) checkpoint in workdir and evaluates
  it."""
  ctx = make_context(config, workdir, generate_data=False)
  ckpt = ctx.checkpointer()
  try:
    if which == "best" and ckpt.best is None:
      raise FileNotFoundError("--checkpoint=best needs config.train.best_metric to be set")
    restored = ckpt.restore(ctx.setup.abstract_state, best=which == "best")
  finally:
    ckpt.close()
  if restored is None:
    where = os.path.join(workdir, "checkpoints")
    if which == "best":
      where = checkpointing.best_directory(where)
    raise FileNotFoundError(f"no checkpoint in {where} to evaluate")
  results = ctx.evaluator().evaluate(restored.state.params)
  finish_eval(ctx, results, None, restored.step)
  return results
