"""The demo world with a pretrained ImageNet backbone (EfficientNet-Lite0) as the frame encoder.

  # frozen backbone, trained from its feature cache (extracted first when missing)
  python -m vidrec_jax.main --config=configs/pretrained.py --workdir=/tmp/vidrec_pretrained
  # the cache alone (sharded over processes and devices)
  python -m vidrec_jax.main --config=configs/pretrained.py --workdir=DIR --mode=extract
  # fine-tuning from pixels: the last model.backbone.top_blocks blocks, or everything
  python -m vidrec_jax.main --config=configs/pretrained.py:top_blocks --workdir=DIR

Variants (comma separated): `smoke` (tiny), `pixels` (frozen, from pixels instead of the
cache), `top_blocks`, `full` (from pixels), `lite1`, `lite2` (bigger EfficientNet-Lite
variants).
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(__file__))
import demo  # noqa: E402


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants = [a for a in arg.split(",") if a]
  c = demo.get_config("smoke" if "smoke" in variants else "")
  c.data.update(frame_size=64, motion=False, normalization="lite", feature_cache="",
                cache_frames=64)
  c.model.frame_encoder = ml_collections.ConfigDict(dict(
      name="backbone", features=64, hidden=128, temporal_difference=True, motion=False))
  c.model.backbone = ml_collections.ConfigDict(dict(
      name="efficientnet_lite0", checkpoint="", outputs=("stage3", "stage5"), grid=2,
      train_mode="frozen", top_blocks=2, from_cache=True, extract_batch_size=64))
  c.train.backbone_learning_rate_factor = 0.1
  for v in variants:
    if v == "smoke":
      c.data.update(frame_size=32, batch_size=8, eval_batch_size=16)
      c.model.frame_encoder.update(features=10, hidden=12)
      c.model.backbone.update(outputs=("stage2", "stage3"), grid=1, extract_batch_size=8)
    elif v in ("top_blocks", "full"):
      c.model.backbone.update(train_mode=v, from_cache=False)
    elif v == "pixels":
      c.model.backbone.update(train_mode="frozen", from_cache=False)
    elif v in ("lite1", "lite2"):
      c.model.backbone.name = "efficientnet_" + v
    else:
      raise ValueError(f"configs/pretrained.py: unknown variant {v!r}; allowed: smoke, pixels, "
                       "top_blocks, full, lite1, lite2")
  return c
