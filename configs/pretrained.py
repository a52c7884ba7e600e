"""The demo world with a pretrained ImageNet backbone (EfficientNet-Lite0): the demo's own model
(configs/demo.py) plus the fine-tuning and other backbone variants.

  # frozen backbone, trained from its feature cache (extracted first when missing)
  python -m vidrec_jax.main --config=configs/pretrained.py --workdir=/tmp/vidrec_pretrained
  # the cache alone (sharded over processes and devices)
  python -m vidrec_jax.main --config=configs/pretrained.py --workdir=DIR --mode=extract
  # fine-tuning from pixels: the last model.backbone.top_blocks blocks, or everything
  python -m vidrec_jax.main --config=configs/pretrained.py:top_blocks --workdir=DIR

Variants (comma separated): `smoke` (tiny), `pixels` (frozen, from pixels instead of the
cache), `top_blocks`, `full` (from pixels), `adjacent` (next-frame feature differences instead of
next-sampled-frame ones), `lite1`, `lite2` (bigger EfficientNet-Lite variants).
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(__file__))
import demo  # noqa: E402


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants = [a for a in arg.split(",") if a]
  smoke = "smoke" in variants
  c = demo.get_config("smoke" if smoke else "")
  if smoke:
    demo.use_pretrained_backbone(c, smoke=True)
  for v in variants:
    if v == "smoke":
      pass
    elif v in ("top_blocks", "full"):
      c.model.backbone.update(train_mode=v, from_cache=False)
    elif v == "pixels":
      c.model.backbone.update(train_mode="frozen", from_cache=False)
    elif v == "adjacent":  # next-frame feature differences (pixels: needs the RGB difference)
      c.model.frame_encoder.temporal_difference = "adjacent"
      c.data.motion = c.model.frame_encoder.motion = True
    elif v in ("lite1", "lite2"):
      c.model.backbone.name = "efficientnet_" + v
    else:
      raise ValueError(f"configs/pretrained.py: unknown variant {v!r}; allowed: smoke, pixels, "
                       "top_blocks, full, adjacent, lite1, lite2")
  return c
