"""The video-encoder ablation: the `two_stream` encoder (models/video_encoder.py) trained from
pixels on worlds whose tastes are of one kind, variant by variant.

Commands:
  python -m vidrec_jax.main --config=configs/encoder_ablation.py:motion,flow --workdir=DIR
  python -m vidrec_jax.main --config=configs/encoder_ablation.py:order,pyramid,seed=1 --workdir=DIR
  python benchmarks/encoder_ablation.py --root=/tmp/ablation   # every cell, 3 seeds, the table

Taste kinds (the world's tastes; pick one): `appearance` (palette and shape only), `motion`
(direction and speed only), `order` (which of a clip's two colours comes first only), `demo`
(the demo's world: appearance and motion tastes, configs/demo.py).
Encoder variants (pick one): `rgb` (RGB frames, mean pooling), `flow` (+ the optical-flow stream,
concatenated), `attention` (+ causal temporal attention), `both` (flow and attention), `pyramid`
(both, with temporal pyramid + attention pooling). `smoke`: a tiny world and model, seconds.
Typed arguments: seed (seed, shuffle seed and world seed: each seed is another world), steps,
frames, batch. The defaults (600 steps of 32 clips, 6 frames of 32x32) keep one run near a
minute on a 2-core CPU so that the 45 runs of the ablation fit in an hour.
"""

import ml_collections

from configs import base
from configs.common import parse_arg

TASTES = ("appearance", "motion", "order", "demo")
ENCODERS = ("rgb", "flow", "attention", "both", "pyramid")
VARIANTS = TASTES + ENCODERS + ("smoke",)
ARGUMENTS = dict(seed=0, steps=600, frames=6, batch=32)
WEIGHT = 1.6  # the demo's taste weights


def encoder(variant: str) -> tuple[ml_collections.ConfigDict, str]:
  """(model.frame_encoder, model.pooling) of an encoder variant."""
  fe = base.two_stream_encoder(flow=variant in ("flow", "both", "pyramid"),
                               attend=variant in ("attention", "both", "pyramid"))
  return fe, "pyramid" if variant == "pyramid" else "masked_mean"


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants, args = parse_arg(arg, "encoder_ablation.py", VARIANTS, **ARGUMENTS)
  tastes = [v for v in variants if v in TASTES]
  encoders = [v for v in variants if v in ENCODERS]
  if len(tastes) > 1 or len(encoders) > 1:
    raise ValueError(f"configs/encoder_ablation.py: pick at most one taste kind "
                     f"({', '.join(TASTES)}) and one encoder ({', '.join(ENCODERS)}); got "
                     f"{', '.join(variants)}")
  c = base.base_config()  # the conv encoder on pixels, replaced below
  taste = tastes[0] if tastes else "motion"
  if taste != "demo":
    c.data.dataset.update(
        appearance_weight=WEIGHT if taste == "appearance" else 0.0,
        motion_weight=WEIGHT if taste == "motion" else 0.0,
        order_weight=WEIGHT if taste == "order" else 0.0)
  c.data.num_frames = args.get("frames", ARGUMENTS["frames"])
  c.data.batch_size = args.get("batch", ARGUMENTS["batch"])
  c.model.frame_encoder, c.model.pooling = encoder(encoders[0] if encoders else "rgb")
  c.model.id_dropout = 0.5
  c.train.update(steps=args.get("steps", ARGUMENTS["steps"]), eval_every=0,
                 best_metric="valid/cold/auc")
  seed = args.get("seed", ARGUMENTS["seed"])
  c.seed = c.data.shuffle_seed = seed
  c.data.dataset.seed = 17 + seed
  if "smoke" in variants:
    smoke = base.base_config()
    base.use_smoke(smoke)
    c.data.dataset.update({k: smoke.data.dataset[k] for k in (
        "num_users", "num_videos", "num_topics", "min_frames", "max_frames", "resolution",
        "slates_per_user", "slate_size")})
    c.data.update(num_frames=5, frame_size=16, batch_size=8, impressions_per_clip=3,
                  eval_batch_size=16, num_workers=0)
    c.model.update(embed_dim=8, hidden=12)
    c.model.frame_encoder.update(channels=(4, 8), flow_channels=(4, 8), features=8,
                                 attention_heads=2)
    c.train.update(steps=4, warmup_steps=1, log_every=2, checkpoint_every=2)
  return c
