"""Pure, jittable train and eval steps. They loop over the model's heads and retrieval tasks, each
of which owns its loss: no step names a task."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vidrec_jax.models.partitioning import constrain
from vidrec_jax.train.state import Setup, TrainState


def losses(setup: Setup, params: dict, batch: dict, key: jax.Array, train: bool,
           catalog: dict | None = None) -> tuple[jax.Array, dict]:
  """Weighted total loss and per-task losses over every real impression of the batch (heads)
  and every clip of the batch (retrieval tasks, in-batch negatives); padding impressions and
  clips that could not be decoded (valid=0) weigh nothing. `catalog`: the arrays a watch-history
  user tower reads (train/catalog.py)."""
  model = setup.model(setup.stop_frozen(params))
  out, inter = model(batch, train=train, key=key, catalog=catalog)
  w = batch["valid"].astype(jnp.float32)[:, None] * batch["weight"]
  denom = jnp.maximum(w.sum(), 1.0)
  per_task = {name: (model.head_loss(name, out, batch) * w).sum() / denom
              for name in model.heads}
  per_task.update({name: task.loss(model, batch, inter) for name, task in model.tasks.items()})
  total = sum(setup.loss_weights[name] * model.weigh_loss(name, v)
              for name, v in per_task.items())
  return total, per_task


LossFn = Callable[[dict, jax.Array], tuple[jax.Array, dict]]


def optimizer_step(setup: Setup, state: TrainState, loss_fn: LossFn) -> tuple[TrainState, dict]:
  """One optimizer step of every trainer: the gradient of `loss_fn`, `setup.tx`'s update.

  Args:
    setup: the model setup; its `tx` transforms the gradients.
    state: the train state; its `rng` folded with its `step` is the step's key.
    loss_fn: `(params, key) -> (loss, parts)`, `parts` a dict of named scalars (per-task
      losses, statistics) differentiated through `loss` only.

  Returns:
    The state one step on, and the metrics `loss`, `loss/<part>` for each part, and the global
    norms `grad_norm`, `param_norm` (after the update) and `update_norm`.
  """
  key = jax.random.fold_in(state.rng, state.step)
  (loss, parts), grads = jax.value_and_grad(lambda p: loss_fn(p, key),
                                            has_aux=True)(state.params)
  updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, **{f"loss/{k}": v for k, v in parts.items()},
             "grad_norm": optax.global_norm(grads), "param_norm": optax.global_norm(params),
             "update_norm": optax.global_norm(updates)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def train_step(setup: Setup, state: TrainState, batch: dict, catalog: dict | None = None
               ) -> tuple[TrainState, dict]:
  """One optimizer step of the heads' and retrieval tasks' losses (`losses`)."""
  state, metrics = optimizer_step(
      setup, state, lambda p, key: losses(setup, p, batch, key, train=True, catalog=catalog))
  metrics["valid_fraction"] = batch["valid"].astype(jnp.float32).mean()
  return state, metrics


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
  return model.predictions(model.score(user_vecs, item_vecs))


def retrieval_topk_step(setup: Setup, params: dict, user_vecs: jax.Array, item_vecs: jax.Array,
                        k: int) -> tuple[jax.Array, jax.Array]:
  """Stage 1 of retrieval then ranking: (scores, catalog rows) of the top k videos of every
  user by the dot product of their retrieval vectors (`model.retrieval_vectors`), over the
  whole catalog (item rows laid out over the mesh by the logical axis `catalog`)."""
  model = setup.model(params)
  items = constrain(item_vecs, ("catalog", "embed"))
  qu, qi = model.retrieval_vectors(user_vecs, items)
  scores = jnp.einsum("ud,nd->un", qu, qi, preferred_element_type=jnp.float32)
  return jax.lax.top_k(scores, k)


def history_eval_step(setup: Setup, params: dict, inputs: dict, item_vecs: jax.Array,
                      catalog: dict) -> dict:
  """Predictions of every head for impressions whose users are encoded from their watch
  histories (`inputs`: history, history_mask, user) against their items' vectors."""
  model = setup.model(params)
  return model.predictions(
      model.score(model.encode_users(inputs, catalog, candidate=item_vecs), item_vecs))


def next_item_losses(setup: Setup, params: dict, batch: dict, catalog: dict, key: jax.Array,
                     softmax: str, mask_history: bool = False) -> tuple[jax.Array, dict]:
  """Next-item cross-entropy at every trained position of every window.

  `full`: a softmax over the catalog's items published during the training period (SASRec with
  cross-entropy; an item published later did not exist then, so it is no negative). `sampled`:
  the other targets of the batch are the negatives (in-batch softmax), each logit corrected by
  the log of its sampling probability (logQ correction, `catalog['log_q']`: in-batch negatives
  arrive in proportion to their training frequency), and another position with the same target
  is masked (an accidental hit, not a negative). With `mask_history` (MicroLens' recipe), the
  items of a position's history in its window (up to and including the position) are no
  negatives of it either: a user's own past items are not what they did not watch.
  """
  model = setup.model(setup.stop_frozen(params))
  drop_key, key = (None, None) if key is None else jax.random.split(key)
  catalog = model.dropped_ids(catalog, drop_key)
  states = model.user_states(batch, catalog, key=key, all_positions=True)  # (B, L, D)
  targets, mask = jnp.maximum(batch["targets"], 0), batch["loss_mask"]
  if softmax == "full":
    logits = jnp.einsum("bld,nd->bln", states, model.all_items(catalog),
                        preferred_element_type=jnp.float32)
    logits = jnp.where(catalog["cold"], -1e9, logits)
    own = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    ce = jax.nn.logsumexp(logits, axis=-1) - own
  else:
    q = states.reshape(-1, states.shape[-1])
    t = targets.reshape(-1)
    m = mask.reshape(-1)
    logits = jnp.einsum("qd,td->qt", q, model.item_vectors(t, catalog),
                        preferred_element_type=jnp.float32) - catalog["log_q"][t][None, :]
    eye = jnp.eye(len(t), dtype=bool)
    keep = (eye | (t[:, None] != t[None, :])) & (m[None, :] > 0)
    if mask_history:
      hist = batch["history"]  # (B, L), PAD = -1
      b, n = hist.shape
      # The first window position holding each in-batch target (n: none), per window.
      first = jnp.where(hist[:, :, None] == t[None, None, :], jnp.arange(n)[None, :, None],
                        n).min(axis=1)  # (B, T)
      seen = first[:, None, :] <= jnp.arange(n)[None, :, None]  # (B, L, T)
      keep &= eye | ~seen.reshape(b * n, -1)
    logits = jnp.where(keep, logits, -1e9)
    ce = (jax.nn.logsumexp(logits, axis=-1) - jnp.diagonal(logits)).reshape(mask.shape)
  loss = (ce * mask).sum() / jnp.maximum(mask.sum(), 1.0)
  return loss, {"next_item": loss}


def next_item_step(setup: Setup, softmax: str, state: TrainState, batch: dict, catalog: dict,
                   mask_history: bool = False) -> tuple[TrainState, dict]:
  """One optimizer step of the next-item objective."""
  return optimizer_step(
      setup, state, lambda p, key: next_item_losses(setup, p, batch, catalog, key, softmax,
                                                    mask_history))


def full_sort_ranks(setup: Setup, params: dict, queries: dict, catalog: dict
                    ) -> tuple[jax.Array, jax.Array]:
  """1-based rank of each query's target among every catalog item by score (ties count against
  the target; RecBole's full sort), and its rank with the query's history items other than the
  target removed from the catalog first (MicroLens' protocol: items the user has watched are
  not candidates). The catalog's items are sharded over the mesh (logical axis `catalog`)."""
  model = setup.model(params)
  users = model.user_states(queries, catalog)  # (B, D)
  items = constrain(model.all_items(catalog), ("catalog", None))
  scores = jnp.einsum("bd,nd->bn", users, items, preferred_element_type=jnp.float32)
  target = queries["target"]
  own = jnp.take_along_axis(scores, target[:, None], axis=1)
  above = scores >= own
  ranks = above.sum(axis=1)
  hist = queries["history"]
  n = hist.shape[1]
  # Each history item once (its first position), never the target, never padding.
  repeat = ((hist[:, :, None] == hist[:, None, :]) & jnp.tril(jnp.ones((n, n), bool), -1)
            ).any(axis=-1)
  counted = (queries["history_mask"] > 0) & ~repeat & (hist != target[:, None])
  hist_above = jnp.take_along_axis(above, jnp.maximum(hist, 0), axis=1) & counted
  return ranks, ranks - hist_above.sum(axis=1)
