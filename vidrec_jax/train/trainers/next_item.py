"""`next_item`: a sequential model trained to predict each user's next item from their watch
history (SASRec's objective), on windows of the training split (data/sequences.py), with a
full softmax over the catalog or an in-batch softmax with logQ correction (`train.softmax`).

Setting (`train.trainer_args`): `mask_history` (default False): with the in-batch softmax, a
position's own history items are no negatives of it (MicroLens' recipe)."""

from __future__ import annotations

import functools

import jax

from vidrec_jax.config_checks import check
from vidrec_jax.data import sequences
from vidrec_jax.train import catalog as catalog_lib
from vidrec_jax.train import checkpointing
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps
from vidrec_jax.train import throughput
from vidrec_jax.train.context import Context
from vidrec_jax.train.trainers import TRAINERS
from vidrec_jax.train.trainers import Trainer


@TRAINERS.register("next_item")
class NextItemTrainer(Trainer):
  """Batches of history windows; one step of `steps.next_item_step` each."""

  models = ("sequential",)

  def __init__(self, ctx: Context, *, mask_history: bool = False):
    super().__init__(ctx)
    self.mask_history = mask_history
    d, h = self.run.data, self.run.data.history
    train = ctx.dataset.split("train").columns
    self.sequences = sequences.user_sequences(train["user_id"], train["video_id"],
                                              train["order"])
    self.windows = sequences.training_windows(self.sequences, h.max_len, h.stride)
    self.steps_per_epoch = len(self.windows) // d.batch_size
    self.catalog = mesh_lib.replicate(catalog_lib.catalog_arrays(ctx), self.setup.mesh)
    # Targets per second of the run's steps after its first (which compiles), timed between
    # blocking points (vidrec_jax/train/throughput.py).
    self._timer = throughput.StepTimer()

  @classmethod
  def validate(cls, *, mask_history=False):
    check(isinstance(mask_history, bool), "train.trainer_args.mask_history", mask_history,
          "True or False")

  @classmethod
  def needs(cls, *, mask_history=False):
    return [("train.softmax", lambda softmax: check(
        not mask_history or softmax == "sampled", "train.trainer_args.mask_history", True,
        f"masks in-batch negatives: needs train.softmax='sampled', not {softmax!r}"))]

  def batches(self, start_step, saved_position):
    d = self.run.data
    i = checkpointing.check_data_position(saved_position, self.position(start_step))
    while True:
      yield mesh_lib.process_rows(
          sequences.batch(self.windows, i, d.batch_size, d.shuffle_seed), "data.batch_size")
      i += 1

  def step_fn(self):
    s = self.setup
    fn = jax.jit(functools.partial(steps.next_item_step, s, self.run.train.softmax,
                                   mask_history=self.mask_history),
                 in_shardings=(s.state_shardings, None, None),
                 out_shardings=(s.state_shardings, None), donate_argnums=(0,))
    return self._timer.wrap(lambda state, batch: fn(state, batch, self.catalog))

  def observe(self, batch):
    targets = float(batch["loss_mask"].sum())
    self._timer.add(targets * jax.process_count())
    return targets

  def totals(self):
    out = {"steps_per_epoch": float(self.steps_per_epoch)}
    # The runner calls this at its blocking points (Trainer.totals), right after it waited for
    # the step: the clock stops there at no cost, and the steps in between stay asynchronous.
    # With the final results (after the final evaluation) it is stopped already.
    rate = self._timer.lap()
    if rate is not None:
      out["samples_per_second"] = rate
    return out
