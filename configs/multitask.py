"""Multi-task experts and retrieval then ranking on the demo's world (issue 13): click, watch time
and like heads on a multi-task trunk, the `user_item` two-tower retrieval task, content-type
embeddings, the two-stage evaluation, and what `--mode=recommend` / `--mode=export` serve.

Commands:
  python -m vidrec_jax.main --config=configs/multitask.py --workdir=/tmp/vidrec_mt
  python -m vidrec_jax.main --config=configs/multitask.py --workdir=/tmp/vidrec_mt \\
      --mode=recommend --user=7 --k=10
  python -m vidrec_jax.main --config=configs/multitask.py:shared_bottom,seed=1 --workdir=DIR
  python benchmarks/multitask.py --root=/tmp/vidrec_mt_bench   # trunks x seeds, the table

Variants (after the colon): the trunk, `shared_bottom`, `mmoe` (4 experts), `ple` (2 shared
+ 1 per task, 2 levels; the default, the best trunk of benchmarks/multitask.py) or `linear` (no
hidden layer: each head linear in [u, i, u*i], multi-task matrix factorisation); `fixed` (the
fixed train.loss_weights; default: learned uncertainty weighting); `wlr` (watch time by YouTube's
weighted logistic regression instead of squared error); `logwatch` (watch time by squared
error of log(1 + seconds): models/heads.py watch_time_log); `given` (watch time and like
trained on clicked impressions, predicted as P(click) x the conditional prediction:
model.given_click); `affinity` (model.shared_affinity); `duration` (the video's length in the
item tower: model.item_duration); `basic` (none of `given`, `affinity`, `duration`, `white`,
which are on by default: DEFAULT_OPTIONS, the best configuration measured); `adjacent` (the backbone
tower's adjacent-frame feature difference instead of `segments`); `flow` (a trained
optical-flow stream beside the frozen backbone, read from the flow cache:
configs/pretrained.py:flow); `hof` (instead of that stream's convs, fixed histograms of each
frame's flow: model.frame_encoder.flow_stream); `white` (the frame head reads the top 64
principal components, whitened, of each frame's cached features joined by its flow histograms,
fitted on the training videos: model.backbone.whiten, whiten_flow); `noid` (no video-ID
embedding: every item vector from content, warm videos as cold ones); `pyramid` (the item
tower of the demo's default, the two_stream encoder with flow and the temporal pyramid from
pixels, instead of the frozen pretrained EfficientNet-Lite0 from its feature cache); `smoke`
(tiny, seconds). Typed arguments: seed (initialisation and data order), world_seed
(data.dataset.seed), steps (default 3000; `smoke`: its own).

The item tower is `configs/demo.py:pretrained`'s (the frozen pretrained EfficientNet-Lite0 trained
from its feature cache: about 5 minutes a run of 3,000 steps here) unless `pyramid`, plus video
ID and content-type embeddings. With `white` (a default) its frame head reads the whitened
components of the cached features and of the flow cache's motion histograms: a first run writes
the flow cache too (data.flow_cache, else WORKDIR/flow).
"""

import ml_collections

from configs import base
from configs.common import parse_arg

TRUNK_NAMES = ("shared_bottom", "mmoe", "ple", "linear")
VARIANTS = TRUNK_NAMES + ("fixed", "wlr", "logwatch", "given", "duration", "adjacent", "affinity",
                          "flow", "hof", "white", "noid", "pyramid", "basic", "smoke")
WHITEN = 64  # `white`: principal components of the cached features and their flow histograms
# 3,000 steps: over worlds 17-19 cold/warm 0.883 +- 0.014 / 0.910 +- 0.014 (sample SD), against
# 0.858 / 0.905 at 2,000, level within noise; on fresh worlds 20-22 0.867 +- 0.027 / 0.911 +-
# 0.018, ahead of `basic` on every metric (BENCHMARKS.md, issue 27); `smoke` keeps its own.
ARGUMENTS = dict(seed=0, world_seed=17, steps=3000)
TRUNKS = {
    "shared_bottom": dict(name="shared_bottom"),
    "mmoe": dict(name="mmoe", num_experts=4),
    "ple": dict(name="ple", shared_experts=2, task_experts=1, levels=2),
    "linear": dict(name="linear"),
}
DEFAULT_TRUNK = "ple"
# On unless `basic`: the best configuration of benchmarks/multitask.py over 3 world seeds
# (BENCHMARKS.md, issue 13; 2,000 steps): test cold/warm gain 0.858 +- 0.023 / 0.905 +- 0.015,
# against 0.791 +- 0.012 / 0.872 +- 0.007 without `white` and 0.749 / 0.852 with none.
DEFAULT_OPTIONS = ("given", "affinity", "duration", "white")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants, args = parse_arg(arg, "multitask.py", VARIANTS, **ARGUMENTS)
  if "basic" not in variants:
    variants = tuple(variants) + tuple(o for o in DEFAULT_OPTIONS if o not in variants)
  trunks = [v for v in variants if v in TRUNK_NAMES]
  if len(trunks) > 1:
    raise ValueError(f"configs/multitask.py: pick one trunk of {', '.join(TRUNK_NAMES)}; got "
                     f"{', '.join(trunks)}")
  c = base.base_config()
  if "smoke" in variants:
    base.use_smoke(c)
  elif "pyramid" in variants:
    base.use_two_stream(c, flow=True, attend=True, pyramid=True)
  else:
    base.use_pretrained_backbone(c)
  m = c.model
  m.trunk = ml_collections.ConfigDict(TRUNKS[trunks[0] if trunks else DEFAULT_TRUNK])
  watch = ("watch_time_logistic" if "wlr" in variants
           else "watch_time_log" if "logwatch" in variants else "watch_time")
  m.heads = ("click", watch, "like")
  m.tasks = ("user_item",)
  m.content_types = ("movie", "series", "news")
  m.loss_weighting = "fixed" if "fixed" in variants else "uncertainty"
  m.item_duration = "duration" in variants
  m.shared_affinity = "affinity" in variants
  if "adjacent" in variants and m.frame_encoder.name == "backbone":
    m.frame_encoder.temporal_difference = "adjacent"
  if {"flow", "hof"} & set(variants) and m.frame_encoder.name == "backbone":
    m.frame_encoder.update(flow=True, flow_source="cache",
                           flow_stream="histogram" if "hof" in variants else "conv")
  if "white" in variants and m.frame_encoder.name == "backbone":
    m.backbone.update(whiten=WHITEN, whiten_flow=True)
  if "noid" in variants:  # the item vector from content alone, warm videos as cold ones
    m.update(use_video_id=False, id_dropout=0.0)
  if "given" in variants:
    m.given_click = ("like",) + ((watch,) if watch != "watch_time_logistic" else ())
  c.evals.two_stage = ml_collections.ConfigDict(dict(
      type="two_stage", splits=("valid", "test"), k=50, candidates=100, ndcg_k=10,
      reference_users=5000))  # the whole-catalog reference: a seeded sample past 5,000 users
  c.recommend.fusion = f"click * (1 + 0.05 * {watch}) + 0.5 * like"
  c.seed = c.data.shuffle_seed = args.get("seed", ARGUMENTS["seed"])
  c.data.dataset.seed = args.get("world_seed", ARGUMENTS["world_seed"])
  if "steps" in args or "smoke" not in variants:
    c.train.steps = args.get("steps", ARGUMENTS["steps"])
  if "smoke" in variants:
    c.evals.two_stage.update(k=5, candidates=10, ndcg_k=5)
    c.recommend.update(k=5, candidates=10)
  return c
