"""How much of the oracle a perfect content encoder could reach, given the logged data.

Fits a bilinear click model on the TRUE latent factors of each video (palette, shape, direction,
speed one-hots) to the training impressions, then reports the oracle-normalised AUC gain on test
cold and warm videos. No pixels are involved: the figure is the ceiling set by the amount of data
per user, which any pixel model has to live under.

  PYTHONPATH=. python benchmarks/factor_ceiling.py [--slates=20,40]
      [--labels=click,watch_time,like] [--video_bias] [--noduration]

With --labels the fit also learns from the watch time and like of clicked impressions, through
the same bilinear affinity (watch time = duration * sigmoid(w * affinity + b), or one learned
scale instead of the duration with --noduration; like = sigmoid(w' * affinity + b')): the
ceiling of a multi-task model.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags
from fitting import full_batch_fit  # benchmarks/fitting.py

from configs import base
from vidrec_jax.data import world as world_lib
from vidrec_jax import metrics

_SLATES = flags.DEFINE_list("slates", ["20", "40"], "slates_per_user values to compare.")
_DIM = flags.DEFINE_integer("dim", 16, "Width of the user and factor embeddings.")
_STEPS = flags.DEFINE_integer("steps", 3000, "Full-batch Adam steps.")
_LABELS = flags.DEFINE_list(
    "labels", ["click"], "Labels the fit learns from: click, and optionally watch_time and "
    "like (clicked impressions only), all through the one bilinear affinity.")
_DURATION = flags.DEFINE_bool(
    "duration", True, "The watch-time fit knows each video's duration (else it learns one "
    "scale for all).")
_VIDEO_BIAS = flags.DEFINE_bool("video_bias", False, "Also fit a bias per (warm) video.")


def ceiling(world_cfg, dim: int, steps: int, labels=("click",), video_bias: bool = False,
            duration: bool = True) -> tuple[int, dict]:
  w = world_lib.World(world_cfg)
  tr, te = w.split_impressions("train"), w.split_impressions("test")
  feats = jnp.asarray(w.features)
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  p = dict(user=0.1 * jax.random.normal(k1, (world_cfg.num_users, dim)),
           factor=0.1 * jax.random.normal(k2, (feats.shape[1], dim)),
           user_bias=jnp.zeros(world_cfg.num_users), bias=jnp.zeros(()),
           position=jnp.zeros(world_cfg.slate_size),
           video_bias=jnp.zeros(world_cfg.num_videos),
           watch=jnp.array([1.0, 0.0, 1.0]), like=jnp.array([1.0, 0.0]))
  vb_scale = 1.0 if video_bias else 0.0
  clicked = tr["click"] > 0
  seconds = jnp.asarray(w.durations()[tr["video_id"]])

  def affinity(p, u, v):
    return jnp.sum(p["user"][u] * (feats[v] @ p["factor"]), -1)

  def logits(p, u, v, pos=None):
    out = (p["bias"] + p["user_bias"][u] + vb_scale * p["video_bias"][v]
           + affinity(p, u, v))
    return out if pos is None else out + p["position"][pos]

  def loss(p):
    total = optax.sigmoid_binary_cross_entropy(
        logits(p, tr["user_id"], tr["video_id"], tr["position"]), tr["click"]).mean()
    a = affinity(p, tr["user_id"], tr["video_id"])
    if "watch_time" in labels:  # share watched = sigmoid(affinity + noise), among clicks
      scale = seconds if duration else jnp.exp(p["watch"][2])
      pred = scale * jax.nn.sigmoid(p["watch"][0] * a + p["watch"][1])
      total += jnp.sum(jnp.where(clicked, jnp.square(pred - tr["watch_time"]), 0.0)) / (
          jnp.sum(clicked))
    if "like" in labels:
      lk = optax.sigmoid_binary_cross_entropy(p["like"][0] * a + p["like"][1], tr["like"])
      total += jnp.sum(jnp.where(clicked, lk, 0.0)) / jnp.sum(clicked)
    return total

  p = full_batch_fit(loss, p, optax.adamw(1e-2, weight_decay=1e-2), steps)
  out = {}
  for name, sel in (("cold", te["cold"] == 1), ("warm", te["cold"] == 0)):
    y = te["click"][sel]
    model = metrics.auc(y, np.asarray(logits(p, te["user_id"][sel], te["video_id"][sel])))
    oracle = metrics.auc(y, w.oracle_logit(te["user_id"][sel], te["video_id"][sel]))
    out[name] = (model - 0.5) / (oracle - 0.5)
  return len(tr["click"]), out


def main(_):
  print(f"{'slates/user':>11s} {'train imps':>10s} {'cold gain':>10s} {'warm gain':>10s}")
  for slates in _SLATES.value:
    cfg = base.world_config()
    cfg.slates_per_user = int(slates)
    n, g = ceiling(cfg, _DIM.value, _STEPS.value, tuple(_LABELS.value), _VIDEO_BIAS.value,
                   _DURATION.value)
    print(f"{slates:>11s} {n:10d} {g['cold']:10.3f} {g['warm']:10.3f}")


if __name__ == "__main__":
  app.run(main)
