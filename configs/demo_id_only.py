"""The demo world and trainer with an ID-only model (no pixels): the cold-start baseline.

  python -m vidrec_jax.main --config=configs/demo_id_only.py --workdir=/tmp/vidrec_id_only
Variants and typed arguments: those of configs/demo.py (e.g. `smoke`, `steps=100`).
"""

from configs import demo


def get_config(arg: str = ""):
  return demo.get_config(",".join(["id_only"] + [a for a in arg.split(",") if a]))
