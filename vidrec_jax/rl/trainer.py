"""The `reinforce` trainer: a softmax policy over the corpus trained with REINFORCE on logged
slates, with the correction of `config.rl.correction` (rl/losses.py). Batches are logged steps
(history, clicked video, behaviour propensity, return-to-go); batch i is a pure function of i,
so a resumed run continues with the same batches.

It is registered in `train.trainers.TRAINERS`, whose discovery reaches this module, so
`train.trainer=reinforce` finds it by name. It runs inside the RL experiment
(rl/experiment.py: `--mode=rl`, or `--mode=train` with `train.trainer=reinforce`), which builds
its context: the logs, the catalog and the model setup on the mesh; an RL policy
(rl/policies/) builds it with its own correction.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vidrec_jax.data.datasets.schema import DataError
from vidrec_jax.rl import losses
from vidrec_jax.rl.logs import Logs
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.train import checkpointing
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import steps
from vidrec_jax.train.state import Setup
from vidrec_jax.train.state import TrainState
from vidrec_jax.train.trainers import TRAINERS
from vidrec_jax.train.trainers import Trainer


@dataclasses.dataclass
class RLContext:
  """What the trainer needs: the run's settings, the model setup, the training logs and the
  per-catalog arrays (vocabulary rows and content factors, row = video id)."""

  run: RunSpec
  setup: Setup
  logs: Logs
  catalog: dict


@dataclasses.dataclass(frozen=True)
class StepArgs:
  correction: str
  weight_cap: float
  topk_k: int  # the top-K correction's K
  estimated: bool  # the behaviour propensities come from the model's behaviour head


def reinforce_losses(setup: Setup, a: StepArgs, params: dict, batch: dict, catalog: dict,
                     key: jax.Array | None) -> tuple[jax.Array, dict]:
  model = setup.model(setup.stop_frozen(params))
  logits, states = model.logits(batch, catalog, key=key)
  action = jnp.maximum(batch["action"], 0)  # (B, A)
  beta, extra, stats = batch["beta"], 0.0, {}
  if a.estimated:
    logp_b = jax.nn.log_softmax(model.behaviour_logits(states, catalog), axis=-1)
    shown = jnp.take_along_axis(logp_b, batch["slate"], axis=1)  # each shown video is a draw
    extra = -shown.mean()
    beta = jnp.exp(jnp.take_along_axis(logp_b, action, axis=1))
    stats["behaviour"] = extra
  ret = jnp.broadcast_to(batch["ret"][:, None], action.shape)
  loss, more = losses.reinforce_loss(logits, action, beta, ret, batch["mask"], a.correction,
                                     a.weight_cap, a.topk_k)
  stats.update(more, policy=loss)
  return loss + extra, stats


def reinforce_step(setup: Setup, a: StepArgs, state: TrainState, batch: dict, catalog: dict
                   ) -> tuple[TrainState, dict]:
  return steps.optimizer_step(
      setup, state, lambda p, key: reinforce_losses(setup, a, p, batch, catalog, key))


ACTIONS = ("clicked", "slate")


def batch_of(logs: Logs, rows: np.ndarray, actions: str) -> dict[str, np.ndarray]:
  """The step inputs of logged rows. `actions`: 'clicked' (one action per step, the clicked
  video, masked out on steps without a click: the logged-interaction form of Chen et al.), or
  'slate' (every shown video is an action credited with the step's return, so a slate that
  ends a session early is blamed whatever was clicked)."""
  video, hist, slate = logs.video[rows], logs.history[rows], logs.slate[rows]
  clicked = video >= 0
  out = {"history": hist, "history_mask": (hist >= 0).astype(np.float32), "ret": logs.ret[rows],
         "clicked": clicked.astype(np.float32), "slate": slate}
  if actions == "slate":
    return dict(out, action=slate, beta=logs.beta[rows], mask=np.ones(slate.shape, np.float32))
  if actions != "clicked":
    raise ValueError(f"unknown rl.actions {actions!r}; allowed: {', '.join(ACTIONS)}")
  pos = np.maximum(logs.choice[rows], 0)
  beta = np.take_along_axis(logs.beta[rows], pos[:, None], axis=1)[:, 0]
  return dict(out, action=np.where(clicked, video, 0)[:, None],
              beta=np.where(clicked, beta, 1.0)[:, None], mask=clicked[:, None].astype(np.float32))


@functools.cache
def _jitted_step(setup: Setup, a: StepArgs):
  """One compiled step per (setup, arguments): the RL experiment's seeds share it."""
  return jax.jit(functools.partial(reinforce_step, setup, a),
                 in_shardings=(setup.state_shardings, None, None),
                 out_shardings=(setup.state_shardings, None), donate_argnums=(0,))


@TRAINERS.register("reinforce")
class ReinforceTrainer(Trainer):
  """Batches of logged steps; one step of `reinforce_step` each."""

  models = ("policy",)
  runs_experiment = True

  def __init__(self, ctx: RLContext):
    super().__init__(ctx)
    self.logs = ctx.logs
    r = self.run.rl
    # The top-K correction's K: the slate size unless rl.topk_k names another (Chen et al.
    # vary it too: K = 1 is the standard correction).
    self.args = StepArgs(r.correction, float(r.weight_cap),
                         r.topk_k or r.simulator.slate_size,
                         r.behaviour == "estimated")
    # The click models (supervised, and de-biased by importance weights) learn from clicks
    # whatever rl.actions says.
    self.actions = ("clicked" if losses.CORRECTIONS.get(r.correction).click_model
                    else r.actions)
    self.catalog = mesh_lib.replicate(ctx.catalog, self.setup.mesh)
    self.steps_per_epoch = len(self.logs) // self.run.data.batch_size
    if self.steps_per_epoch == 0:
      raise DataError(f"the logs hold {len(self.logs)} steps, fewer than data.batch_size="
                      f"{self.run.data.batch_size}; log more sessions (rl.log_sessions)")

  def rows(self, index: int) -> np.ndarray:
    """The logged rows of batch `index`: epoch permutations seeded by (shuffle_seed, epoch)."""
    b = self.run.data.batch_size
    epoch, i = divmod(index, self.steps_per_epoch)
    perm = np.random.default_rng([self.run.data.shuffle_seed, epoch]).permutation(
        len(self.logs))
    return perm[i * b:(i + 1) * b]

  def batches(self, start_step, saved_position):
    i = checkpointing.check_data_position(saved_position, self.position(start_step))
    while True:
      yield mesh_lib.process_rows(batch_of(self.logs, self.rows(i), self.actions),
                                  "data.batch_size")
      i += 1

  def step_fn(self):
    fn = _jitted_step(self.setup, self.args)
    return lambda state, batch: fn(state, batch, self.catalog)

  def observe(self, batch):
    return float(batch["mask"].sum())

  def totals(self):
    return {"steps_per_epoch": float(self.steps_per_epoch)}
