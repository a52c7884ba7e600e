"""What `--mode=recommend` and `--mode=export` serve, whichever model made it: a checkpoint's
servable parts (`Servable`: the catalog's vectors, the exported user tower and ranker, the user
vocabulary and histories), and `export_fn`, which serializes a function with `jax.export` for
every platform a bundle may be served on. vidrec_jax/recommend.py builds one from a trained
recommender, vidrec_jax/rl/serve.py from a trained RL policy."""

from __future__ import annotations

import dataclasses

import jax
from absl import logging

from vidrec_jax.serving.two_stage import Histories
from vidrec_jax.serving.two_stage import Items

# The bundle's functions are lowered for these platforms, so it serves on any of them.
PLATFORMS = ("cpu", "cuda", "tpu")


def export_fn(fn, *args: jax.ShapeDtypeStruct) -> jax.export.Exported:
  """`fn` as a `jax.export` function for PLATFORMS (this machine's platform alone when a
  lowering for another one fails)."""
  try:
    return jax.export.export(jax.jit(fn), platforms=PLATFORMS)(*args)
  except Exception as e:  # noqa: BLE001 - any lowering failure: serve this platform only
    logging.warning("export for %s failed (%s: %s); exporting for %s only", PLATFORMS,
                    type(e).__name__, str(e).splitlines()[0][:200], jax.default_backend())
    return jax.export.export(jax.jit(fn))(*args)


@dataclasses.dataclass
class Servable:
  """A checkpoint's servable parts: the catalog's vectors and the exported functions."""

  items: Items
  user_tower: jax.export.Exported | None  # None: item-to-item retrieval (din)
  ranker: jax.export.Exported
  users: dict[str, int]  # raw user id -> row
  oov_row: int
  candidates: int
  step: int
  mesh: jax.sharding.Mesh
  rules: tuple
  heads: tuple[str, ...]
  exclude_watched: bool
  histories: Histories | None = None
  user_input: str = "row"  # bundle.USER_INPUTS
