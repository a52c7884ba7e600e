"""MicroLens next-item recommendation in MicroLens' own protocol, on a release folder as
downloaded (vidrec_jax/data/datasets/microlens.py):

  python -m vidrec_jax.main --config=configs/microlens.py:frozen \\
      --config.data.dataset.path=/path/to/MicroLens-100k --workdir=DIR

The protocol (Ni et al., 2023, and their code's defaults as the issue records them): users with
fewer than 5 interactions dropped, each user's last 13 kept, leave-one-out by time; SASRec over
the history; an in-batch softmax with logQ correction (popularity, power 1) whose negatives
exclude the user's own history items (`mask_history`); AdamW at 1e-4 with weight decay 0.1;
the best checkpoint by valid NDCG@10 under the history-masked full sort, which `full_sort`
reports as `test/masked/ndcg@10` beside the unmasked RecBole-style `test/ndcg@10`. The
periodic validations during training rank a fixed sample of 10,000 valid users against the whole
catalog (`evals.full_sort.periodic_queries`: MicroLens-100K has 100,000); the final evaluation
ranks every user.

Variants, as MicroLens' table:
  id      items by ID only (their SASRec ID baseline)
  frozen  a frozen ImageNet EfficientNet-Lite0's frame features, cached once, plus the ID
  e2e     the backbone's top 2 blocks trained end to end on decoded frames (our TSN sampling of
          `data.num_frames` frames; with `middle`, their 5 consecutive middle frames), plus
          the ID
  tower   our best item tower on top of `frozen`: the frozen features' top 64 principal
          components, whitened, joined by each frame's optical-flow histograms (motion, which a
          still-image network misses), as `configs/multitask.py`'s default `white`; plus the
          cached title embedding of the frozen all-MiniLM-L6-v2 (MicroLens ships titles); plus
          the ID
  middle  with a video variant: MicroLens' frames, 5 consecutive ones around each video's
          middle (`data.frame_selection='middle'`, `data.cache_frames` 5), instead of our
          `data.cache_frames` 16 spread over the whole video and TSN-sampled to 5. With
          `frozen` on feed world 17 at 1,000 videos the two are level within noise on valid
          (Welch p = 0.22), so the spread frames stay the default
  smoke   tiny, for a miniature release (tests/helpers.py `make_microlens_folder`)
Typed arguments: those of configs/demo.py (e.g. `seed=1`, `steps=500`). Without the release, a
synthetic world in its layout stands in (`--mode=generate --config.data.dataset.layout=microlens`
with any synthetic config, `exposure_taste` > 0 for a feed's slates: docs/real_data.md).
Measured on the feed world (benchmarks/results/microlens.md): `id` is ahead of `frozen` at
1,000 videos (Welch p = 0.0002) and level with it on test at 5,000 (ahead on valid), both near
the world's oracle; at 20,000 videos on the uniform-slate world level within noise (p = 0.62),
where even the oracle hits 0.0015; `tower` is behind `id` on valid at 1,000 videos on feed worlds
17 and 18 (Welch p = 0.0015, 0.027), level with `frozen`, and alone with `frozen` in hitting new
items (5 and 4 hits in three runs against 0, level within noise); `e2e` is not measured (its
frames at 224² need a GPU).
"""

import ml_collections

from configs import base
from configs.common import parse_arg

VARIANTS = ("id", "frozen", "e2e", "tower", "middle", "smoke")
WHITEN = 64  # `tower`: principal components of the cached features joined by flow histograms


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants, args = parse_arg(arg, "microlens.py", VARIANTS, **base.ARGUMENTS)
  c = base.base_config()
  c.data.dataset = ml_collections.ConfigDict(dict(
      name="microlens", path="", min_interactions=5, keep_last=13))
  c.data.update(batch_size=64, eval_batch_size=256, num_workers=2, frame_size=224,
                normalization="lite", num_frames=5, cache_frames=16,
                history=dict(max_len=13, stride=13))
  c.model.update(name="sequential", embed_dim=64)
  c.model.frame_encoder = ml_collections.ConfigDict(dict(name="none"))
  c.model.text.item_tower = False
  c.model.user_tower = ml_collections.ConfigDict(dict(
      name="sasrec", max_len=13, num_layers=2, num_heads=2, inner_dim=256, dropout_rate=0.1))
  c.train.update(trainer="next_item", trainer_args=dict(mask_history=True), softmax="sampled",
                 learning_rate=1e-4, warmup_steps=0, end_learning_rate_factor=1.0,
                 weight_decay=0.1, grad_clip=1e9, steps=20000, eval_every=200, log_every=100,
                 checkpoint_every=1000, best_metric="valid/masked/ndcg@10", best_mode="max",
                 early_stopping=10)
  c.recommend.fusion = "score"  # the sequential model's one output (its dot product)
  c.evals = ml_collections.ConfigDict(dict(
      full_sort=dict(type="full_sort", splits=("valid", "test"), ks=(10, 20),
                     periodic_queries=10000)))
  for v in variants:
    if v in ("frozen", "e2e", "tower"):
      c.model.frame_encoder = ml_collections.ConfigDict(dict(
          name="backbone", features=64, hidden=128, temporal_difference="none"))
      c.model.backbone.update(outputs=("stage3", "stage5"), grid=2,
                              from_cache=v != "e2e",
                              train_mode="top_blocks" if v == "e2e" else "frozen",
                              top_blocks=2)
      if v == "tower":
        c.model.backbone.update(whiten=WHITEN, whiten_flow=True)
        c.model.text.item_tower = True
    elif v == "smoke":
      c.data.update(batch_size=4, eval_batch_size=16, num_workers=0, frame_size=32,
                    cache_frames=8, history=dict(max_len=6, stride=6))
      c.data.dataset.update(min_interactions=2, keep_last=6)
      c.model.update(embed_dim=16)
      c.model.backbone.update(outputs=("stage2", "stage3"), grid=1, extract_batch_size=8)
      c.model.user_tower.update(max_len=6, inner_dim=32)
      c.train.update(steps=6, eval_every=3, log_every=3, checkpoint_every=3, early_stopping=0)
  if "middle" in variants:  # after `smoke`, whatever the order
    c.data.update(frame_selection="middle", cache_frames=c.data.num_frames)
  base.apply_arguments(c, args)
  return c
