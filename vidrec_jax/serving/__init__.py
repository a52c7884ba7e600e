"""Serving: two-stage recommendation (retrieval, then ranking with a fusion formula) and the
bundle `--mode=export` writes, answered from the bundle alone.

  two_stage.py      retrieval of the nearest candidates, ranking, the fused order; a record's
                    line
  bundle_format.py  the bundle's files and manifest, and `write_bundle`
  bundle.py         `load`, which checks a bundle against its manifest, and `Bundle`, which
                    answers
  fusion.py         the fusion formula: parsed with `ast`, never evaluated as Python
  retrieval.py      exact search, and building, tuning and loading an index (ann.py: FAISS,
                    ScaNN)
  http.py           the HTTP service (http_support.py: request batching, the metrics
                    middleware; page.py: the page)

This package imports jax and numpy only, never the trainer (models, train, data), so a server
needs nothing else: `serving.load(export_dir).recommend(user_id, k)`. A bundle of a
tower that reads watch histories also answers `recommend(history=[video ids], k=...)` for a
user it does not know. `--mode=recommend`
(vidrec_jax/recommend.py) runs the same functions as `Bundle.recommend`, so both give the same
videos in the same order. The names below are the package's API.
"""

from vidrec_jax.serving.bundle_format import FILES
from vidrec_jax.serving.bundle_format import FORMAT_VERSION
from vidrec_jax.serving.bundle_format import FUSION
from vidrec_jax.serving.bundle_format import HISTORIES
from vidrec_jax.serving.bundle_format import ITEM_ARRAYS
from vidrec_jax.serving.bundle_format import ITEMS
from vidrec_jax.serving.bundle_format import MANIFEST
from vidrec_jax.serving.bundle_format import RANKER
from vidrec_jax.serving.bundle_format import USER_TOWER
from vidrec_jax.serving.bundle_format import USERS
from vidrec_jax.serving.bundle import Bundle
from vidrec_jax.serving.bundle_format import BundleError
from vidrec_jax.serving.bundle import load
from vidrec_jax.serving.bundle_format import write_bundle
from vidrec_jax.serving.two_stage import Histories
from vidrec_jax.serving.two_stage import answer
from vidrec_jax.serving.two_stage import Items
from vidrec_jax.serving.two_stage import RankFn
from vidrec_jax.serving.two_stage import UserFn
from vidrec_jax.serving.two_stage import format_record
from vidrec_jax.serving.two_stage import history_query
from vidrec_jax.serving.two_stage import popular
from vidrec_jax.serving.two_stage import recommend
from vidrec_jax.serving.retrieval import top_candidates
from vidrec_jax.serving.two_stage import unknown_user_note
from vidrec_jax.serving.two_stage import user_query

__all__ = [
    "FILES", "FORMAT_VERSION", "FUSION", "HISTORIES", "ITEM_ARRAYS", "ITEMS", "MANIFEST",
    "RANKER", "USER_TOWER", "USERS", "Bundle", "BundleError", "Histories", "Items", "RankFn",
    "UserFn", "answer", "format_record", "history_query", "load", "popular", "recommend", "top_candidates",
    "unknown_user_note", "user_query", "write_bundle",
]
