"""Pure, jittable train and eval steps. They loop over the model's heads and retrieval tasks, each
of which owns its loss: no step names a task."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

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
  per_task = {name: (head.loss(out[name], out, batch) * w).sum() / denom
              for name, head in model.heads.items()}
  per_task.update({name: task.loss(model, batch, inter) for name, task in model.tasks.items()})
  total = sum(setup.loss_weights[name] * v for name, v in per_task.items())
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
  """Item vectors for a batch of clips (the model's item inputs) and video vocab rows, and
  every retrieval task's embeddings of the same clips."""
  model = setup.model(params)
  vec, inter = model.encode_items(batch, batch["video"])
  return vec, model.retrieval_embeddings(batch, inter)


def encode_users_step(setup: Setup, params: dict, inputs: dict) -> jax.Array:
  """User vectors from the user tower's inputs."""
  return setup.model(params).encode_users(inputs)


def eval_step(setup: Setup, params: dict, user_vecs: jax.Array, item_vecs: jax.Array) -> dict:
  """Position-free predictions of every head for paired user and item vectors."""
  model = setup.model(params)
  raw = model.score(user_vecs, item_vecs)
  return {name: head.predict(raw[name]) for name, head in model.heads.items()}
