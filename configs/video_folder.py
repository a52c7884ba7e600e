"""Next-item recommendation on a folder of real videos and interaction logs, laid out like the
MicroLens release: `interactions.csv` (user,item,timestamp), `titles.csv` (item,title) and
`videos/<item>.<mp4|avi|flv|mkv|mov>`. Items are represented by their ID, their title (frozen
MiniLM embedding) and their video (a frozen ImageNet EfficientNet-Lite0's features, extracted
once into the feature cache, mean- and max-pooled over the video's frames), so an item new in
the test period is ranked by its content; users by SASRec over their watch history.

  python -m vidrec_jax.main --config=configs/video_folder.py \\
      --config.data.dataset.path=FOLDER --workdir=DIR

Variants: `id_only` (items by ID only: the baseline for new items), `titles_only`, `smoke`
(tiny model and batches, for a miniature folder). Typed arguments: those of configs/demo.py.
"""

import ml_collections

from configs import base
from configs.common import parse_arg

VARIANTS = ("id_only", "titles_only", "smoke")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants, args = parse_arg(arg, "video_folder.py", VARIANTS, **base.ARGUMENTS)
  c = base.base_config()
  c.data.dataset = ml_collections.ConfigDict(dict(
      name="video_folder", path="", min_interactions=0, keep_last=0))
  c.data.update(batch_size=32, eval_batch_size=256, num_workers=2, frame_size=64,
                normalization="lite", cache_frames=32, history=dict(max_len=50, stride=25))
  c.model.update(name="sequential", embed_dim=64)
  c.model.frame_encoder = ml_collections.ConfigDict(dict(
      name="backbone", features=64, hidden=128, temporal_difference="none"))
  c.model.backbone.update(outputs=("stage3", "stage5"), grid=2, from_cache=True)
  c.model.text.item_tower = True
  c.model.user_tower = ml_collections.ConfigDict(dict(
      name="sasrec", max_len=50, num_layers=2, num_heads=2, inner_dim=256, dropout_rate=0.2))
  c.train.update(trainer="next_item", softmax="full", learning_rate=1e-3, warmup_steps=0,
                 end_learning_rate_factor=1.0, weight_decay=0.0, grad_clip=1e9, steps=2000,
                 eval_every=100, log_every=100, checkpoint_every=500,
                 best_metric="valid/ndcg@10", best_mode="max", early_stopping=10)
  c.recommend.fusion = "score"  # the sequential model's one output (its dot product)
  c.evals = ml_collections.ConfigDict(dict(
      full_sort=dict(type="full_sort", splits=("valid", "test"), ks=(10, 20))))
  for v in variants:
    if v == "id_only":
      c.model.frame_encoder = ml_collections.ConfigDict(dict(name="none"))
      c.model.text.item_tower = False
    elif v == "titles_only":
      c.model.frame_encoder = ml_collections.ConfigDict(dict(name="none"))
    elif v == "smoke":
      c.data.update(batch_size=4, eval_batch_size=16, num_workers=0, frame_size=32,
                    cache_frames=8, history=dict(max_len=8, stride=4))
      c.model.update(embed_dim=16)
      c.model.backbone.update(outputs=("stage2", "stage3"), grid=1, extract_batch_size=8)
      c.model.text.max_length = 16
      c.model.user_tower.update(max_len=8, inner_dim=32)
      c.train.update(steps=6, eval_every=3, log_every=3, checkpoint_every=3, early_stopping=0)
  base.apply_arguments(c, args)
  return c
