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
next-sampled-frame ones), `flow` (a trained optical-flow stream beside the frozen backbone, from
the flow cache: the two-stream design with a pretrained spatial stream), `lite1`, `lite2`
(bigger EfficientNet-Lite variants); and the typed arguments of configs/demo.py (configs/base.py) (e.g.
`steps=600`).
"""

import ml_collections

from configs import base
from configs.common import parse_arg

VARIANTS = ("smoke", "pixels", "top_blocks", "full", "adjacent", "flow", "lite1", "lite2")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  variants, args = parse_arg(arg, "pretrained.py", VARIANTS, **base.ARGUMENTS)
  smoke = "smoke" in variants
  c = base.base_config()
  if smoke:
    base.use_smoke(c)
  base.use_pretrained_backbone(c, smoke=smoke)
  for v in variants:
    if v in ("top_blocks", "full"):
      c.model.backbone.update(train_mode=v, from_cache=False)
    elif v == "pixels":
      c.model.backbone.update(train_mode="frozen", from_cache=False)
    elif v == "adjacent":  # next-frame feature differences
      c.model.frame_encoder.temporal_difference = "adjacent"
    elif v == "flow":  # the flow cache from cached features; from pixels, estimated in the step
      c.model.frame_encoder.update(
          flow=True, flow_source="cache" if c.model.backbone.from_cache else "device")
      if smoke:
        c.model.frame_encoder.flow_channels = (4, 6)
    elif v in ("lite1", "lite2"):
      c.model.backbone.name = "efficientnet_" + v
  base.apply_arguments(c, args)
  return c
