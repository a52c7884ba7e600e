"""Demo: a synthetic video world and a recommender on it, on CPU in under 10 minutes.

The default is the multi-task model of configs/multitask.py, exactly (`get_config("")` there):
click, watch-time and like heads on a PLE trunk with learned uncertainty weights, the two-tower
`user_item` retrieval task and a two-stage evaluation, over an item tower on the frozen ImageNet
EfficientNet-Lite0 (stage3 and stage5 features from its cache) whose frame head reads the
whitened principal components of those features joined by the flow cache's motion histograms,
with video-ID, content-type and duration embeddings; 3,000 steps. It was chosen by valid among
the three candidates on worlds 20-22, which no earlier choice used (benchmarks/results/demo.md, "The
demo's default on fresh worlds 20-22", issue 27): valid cold / warm oracle gain 0.882 / 0.918 (test
0.867 +- 0.027 / 0.911 +- 0.018, n = 3, sample SD) against 0.662 / 0.699 (test 0.683 / 0.701)
for the `two_stream` pyramid that was the default before, and 0.691 / 0.783 (test 0.666 /
0.775) for `pretrained`; ahead of both on every metric, valid and test (paired p <= 0.047). From
an empty workdir it took 340 s on a quiet 2-core machine, world generation and both caches
included.

Commands:
  python -m vidrec_jax.main --config=configs/demo.py --workdir=/tmp/vidrec_demo
  python -m vidrec_jax.main --config=configs/demo.py:smoke --workdir=/tmp/vidrec_smoke
  python -m vidrec_jax.main --config=configs/demo.py --workdir=/tmp/vidrec_demo --mode=eval
  python -m vidrec_jax.main --config=configs/demo.py:smoke,frames=8,steps=20 --workdir=DIR
  python -m vidrec_jax.main --config=configs/demo.py --workdir=DIR --mode=recommend --user=7 --k=10
  python -m vidrec_jax.main --config=configs/demo.py --workdir=DIR --mode=export --export_dir=E

Variants (after the colon, comma separated). Item towers, instead of the default's model:
`two_stream` (the default until issue 27: the spatio-temporal `two_stream` encoder trained from
32x32 pixels, an RGB conv stream and an optical-flow stream with the flow estimated in JAX inside
the train step, fused per frame, causal temporal attention and the temporal pyramid pooling;
click and watch-time heads), `pretrained` (the frozen EfficientNet-Lite0 from its feature cache,
click and watch-time heads: the demo before issue 12), `conv` (a small conv frame encoder trained
from scratch on pixels + RGB difference, mean+max pooling), `smoke` (tiny conv model, seconds),
`id_only` (no pixels). With any tower: `text` (titles from the frozen MiniLM sentence encoder in
the item tower, plus the text-matching and visual-query tasks), `sasrec` / `din` (users from
their watch history, each impression's history being the user's earlier clicks: a causal
transformer, or target attention against the impression's video). Typed arguments
(`key=value`): frames (data.num_frames), steps (train.steps; the default model's own is 3,000,
the other towers' 2,000), seed (seed and data.shuffle_seed), world_seed (data.dataset.seed), lr
(train.learning_rate), batch (data.batch_size), workers (data.num_workers). configs/pretrained.py
has the fine-tuning variants, configs/multitask.py the multi-task ones.
"""

import ml_collections

from configs import base
from configs import multitask
from configs.common import parse_arg

TOWERS = ("two_stream", "pretrained", "conv", "smoke", "id_only")
VARIANTS = TOWERS + ("text", "sasrec", "din")
ARGUMENTS = base.ARGUMENTS


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants, args = parse_arg(arg, "demo.py", VARIANTS, **ARGUMENTS)
  towers = [v for v in variants if v in TOWERS]
  if not towers:  # the default: configs/multitask.py's model
    c = multitask.get_config("")
  else:
    c = base.base_config()
    if "smoke" in towers:
      base.use_smoke(c)
    if "pretrained" in towers:
      base.use_pretrained_backbone(c)
    elif "two_stream" in towers:
      base.use_two_stream(c, flow=True, attend=True, pyramid=True)
    if "id_only" in towers:
      c.model.frame_encoder = ml_collections.ConfigDict(dict(name="none"))
      c.model.id_dropout = 0.0
  for v in variants:
    if v in ("sasrec", "din") and "two_stage" in c.evals:
      # Its retrieval stage ranks by one vector per user; a history tower's depends on the
      # impression's time (din's on the candidate too). The user_item task still trains.
      del c.evals["two_stage"]
    if v == "text":  # titles in the item tower, and both retrieval tasks
      c.model.text.item_tower = True
      c.model.tasks = tuple(c.model.tasks) + ("text_match", "visual_query")
    elif v == "sasrec":
      c.data.history.update(max_len=20, stride=10)
      c.model.user_tower = ml_collections.ConfigDict(dict(
          name="sasrec", max_len=20, num_layers=1, num_heads=2,
          inner_dim=2 * c.model.embed_dim, dropout_rate=0.1))
    elif v == "din":
      c.data.history.update(max_len=20, stride=10)
      c.model.user_tower = ml_collections.ConfigDict(dict(name="din", hidden=c.model.hidden))
  base.apply_arguments(c, args)
  return c
