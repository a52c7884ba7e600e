"""Pure, jittable train and eval steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vidrec_jax.models import heads as heads_lib
from vidrec_jax.models import retrieval
from vidrec_jax.train.state import Setup, TrainState


def losses(setup: Setup, params: dict, batch: dict, key: jax.Array, train: bool
           ) -> tuple[jax.Array, dict]:
  """Weighted total loss and per-task losses over every real impression of the batch (heads)
  and every clip of the batch (retrieval tasks, in-batch negatives); padding impressions and
  clips that could not be decoded (valid=0) weigh nothing."""
  model = setup.model(setup.stop_frozen(params))
  out, inter = model(batch, train=train, key=key)
  w = batch["valid"].astype(jnp.float32)[:, None] * batch["weight"]
  denom = jnp.maximum(w.sum(), 1.0)
  per_task = {h: (heads_lib.HEADS[h].loss(out, batch) * w).sum() / denom
              for h in setup.config.model.heads}
  for task, (queries, targets, log_scale) in inter.get("retrieval", {}).items():
    valid, group = batch["valid"], batch["video"]
    if task == "text_match":  # another video with the same title is no negative either
      group = batch["title_group"]
    else:
      valid = valid * batch["query_valid"]
    per_task[task] = retrieval.contrastive_loss(queries, targets, log_scale, valid, group)
  weights = setup.config.train.loss_weights
  total = sum(weights[h] * v for h, v in per_task.items())
  return total, per_task


def train_step(setup: Setup, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
  """One optimizer step; the dropout key is folded from the state's rng and step."""
  key = jax.random.fold_in(state.rng, state.step)
  (loss, per_task), grads = jax.value_and_grad(
      lambda p: losses(setup, p, batch, key, train=True), has_aux=True)(state.params)
  updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, **{f"loss/{k}": v for k, v in per_task.items()},
             "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params),
             "update_norm": optax.global_norm(updates),
             "valid_fraction": batch["valid"].astype(jnp.float32).mean()}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def encode_items_step(setup: Setup, params: dict, batch: dict) -> tuple[jax.Array, dict]:
  """Item vectors for a batch of clips (frames, mask, optional motion, title inputs) and video
  vocab rows, and the retrieval tasks' embeddings of the same clips."""
  model = setup.model(params)
  vec, inter = model.encode_items(batch, batch["video"])
  emb = (model.retrieval_embeddings(batch, inter["content"], inter.get("title"))
         if model.tasks else {})
  return vec, emb


def encode_users_step(setup: Setup, params: dict, users: jax.Array) -> jax.Array:
  return setup.model(params).encode_users(users)


def eval_step(setup: Setup, params: dict, user_vecs: jax.Array, item_vecs: jax.Array) -> dict:
  """Position-free predictions of every head for paired user and item vectors."""
  raw = setup.model(params).score(user_vecs, item_vecs)
  return {h: heads_lib.HEADS[h].predict(v) for h, v in raw.items()}
