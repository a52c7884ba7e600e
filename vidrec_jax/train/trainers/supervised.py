"""`supervised`: the multi-task recommender trained on logged impressions (heads) and in-batch
retrieval pairs (tasks), from the Grain training stream."""

from __future__ import annotations

import functools

import jax
from absl import logging

from vidrec_jax.data import pipeline
from vidrec_jax.train import checkpointing
from vidrec_jax.train import steps
from vidrec_jax.train.context import Context
from vidrec_jax.train.trainers import TRAINERS
from vidrec_jax.train.trainers import Trainer


@TRAINERS.register("supervised")
class SupervisedTrainer(Trainer):
  """Batches of clips with their impressions; one optimizer step of `steps.train_step` each."""

  def __init__(self, ctx: Context):
    super().__init__(ctx)
    self.bad_videos: set[int] = set()

  def batches(self, start_step, saved_position):
    ctx, d = self.ctx, self.run.data
    first = checkpointing.check_data_position(saved_position, self.position(start_step))
    return iter(pipeline.train_dataset(
        ctx.dataset.split("train"), ctx.spec, ctx.sampler(d.cache_videos),
        user_vocab=ctx.user_vocab, video_vocab=ctx.video_vocab, video_ids=ctx.train_video_ids,
        batch_size=d.batch_size, impressions_per_clip=d.impressions_per_clip,
        shuffle_seed=d.shuffle_seed, process_index=jax.process_index(),
        process_count=jax.process_count(), options=ctx.loader_options, start_batch=first,
        titles=ctx.video_inputs, history=ctx.click_history, history_len=d.history.max_len))

  def step_fn(self):
    s, catalog = self.setup, self.ctx.catalog
    fn = jax.jit(functools.partial(steps.train_step, s),
                 in_shardings=(s.state_shardings, None, None),
                 out_shardings=(s.state_shardings, None), donate_argnums=(0,))
    return lambda state, batch: fn(state, batch, catalog)

  def observe(self, batch):
    invalid = batch["valid"] == 0
    if invalid.any():
      new = set(batch["video_id"][invalid].tolist()) - self.bad_videos
      for v in sorted(new):
        logging.warning("training skips examples of undecodable video %s",
                        self.ctx.dataset.catalog.path(v))
      self.bad_videos |= new
    return float(batch["weight"].sum())

  def totals(self):
    return {"skipped_videos": float(len(self.bad_videos))}
