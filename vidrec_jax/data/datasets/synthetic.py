"""`synthetic`: the generated video world (data/world.py), written once as real video files plus
TFDS/ArrayRecord records, read into the dataset schema.

Arguments: the `config.data.dataset` section (seed, sizes, tastes, logging policy; see
configs/demo.py).
Capabilities: impressions in slates with positions, real video files, and an oracle (every
record carries the true click probability of its pair).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
from absl import logging

from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.data import generate
from vidrec_jax.data import microlens_layout
from vidrec_jax.data import tfds_world
from vidrec_jax.data import world as world_lib
from vidrec_jax.data.datasets import DATASETS
from vidrec_jax.data.datasets import DatasetSource
from vidrec_jax.data.datasets import schema
from vidrec_jax.data.text_clean import decode_utf8


def open_source(data_dir: str, config_name: str, split: str):
  """The TFDS ArrayRecord data source of one split of the world, or a one-line DataError."""
  return tfds_world.open_source(data_dir, config_name, split)


def decode_titles(raw: np.ndarray) -> np.ndarray:
  """Titles as str: bytes that are not valid UTF-8 are decoded with U+FFFD replacements, and
  the videos concerned are reported (by id) instead of failing the whole catalog."""
  out, bad = [], []
  for i, x in enumerate(raw):
    if isinstance(x, bytes):
      x, replaced = decode_utf8(x)
      if replaced:
        bad.append(i)
    out.append(str(x))
  if bad:
    logging.warning("%d titles are not valid UTF-8 (invalid bytes replaced by U+FFFD): videos %s",
                    len(bad), ", ".join(map(str, bad[:20])) + (" ..." if len(bad) > 20 else ""))
  return np.array(out)


def world_args(args: Mapping[str, Any]) -> world_lib.WorldConfig:
  """The world's arguments: the dataset section without its `name`."""
  return world_lib.WorldConfig.from_args(args)


LAYOUTS = ("tfds", "microlens")


class SyntheticWorld(DatasetSource):
  """The synthetic world: generated on first use in a run-owned data_dir, then read."""

  label_columns = ("click", "watch_time", "like")
  splits = world_lib.SPLITS
  durations = True

  def validate(self, args: Mapping[str, Any]) -> None:
    world_args(args)  # exactly the world's fields
    w = {k: v for k, v in dict(args).items() if k != "name"}
    for f in ("num_users", "num_videos", "num_topics", "min_frames", "max_frames", "resolution",
              "fps", "slates_per_user", "slate_size"):
      positive_int(w[f], f"data.dataset.{f}")
    check(w["min_frames"] <= w["max_frames"], "data.dataset.min_frames", w["min_frames"],
          f"must be <= data.dataset.max_frames={w['max_frames']}")
    check(w["resolution"] % 2 == 0, "data.dataset.resolution", w["resolution"],
          "must be even (H.264 with yuv420p needs even sizes)")
    check(1 <= w["num_palettes"] <= len(world_lib.PALETTE), "data.dataset.num_palettes",
          w["num_palettes"], f"allowed: 1..{len(world_lib.PALETTE)}")
    check(0.0 <= w["cold_fraction"] < 1.0, "data.dataset.cold_fraction", w["cold_fraction"],
          "allowed: 0 <= value < 1")
    check(0.0 < w["train_until"] < w["valid_until"] < 1.0, "data.dataset.train_until",
          w["train_until"], f"need 0 < train_until < valid_until={w['valid_until']} < 1")
    check(w["order_weight"] >= 0.0, "data.dataset.order_weight", w["order_weight"],
          "allowed: >= 0 (0 = no temporal-order tastes)")
    check(w["exposure_taste"] >= 0.0, "data.dataset.exposure_taste", w["exposure_taste"],
          "allowed: >= 0 (0 = slates drawn uniformly from the catalog)")
    check(0.0 <= w["label_noise"] < 0.5, "data.dataset.label_noise", w["label_noise"],
          "allowed: 0 <= value < 0.5")
    check(set(w["format_weights"]) <= set(world_lib.FORMATS), "data.dataset.format_weights",
          dict(w["format_weights"]), f"keys allowed: {', '.join(world_lib.FORMATS)}")
    check(w["layout"] in LAYOUTS, "data.dataset.layout", w["layout"],
          f"allowed: {', '.join(LAYOUTS)}")
    check(w["slate_size"] <= w["num_videos"] * (1 - w["cold_fraction"]),
          "data.dataset.slate_size", w["slate_size"], "must not exceed the number of warm videos")

  def record_defaults(self) -> dict[str, Any]:
    return {"data.dataset.layout": "tfds", "data.dataset.exposure_taste": 0.0}

  def prepare(self, data_dir: str, args: Mapping[str, Any]) -> None:
    world = world_args(args)
    if world.layout == "microlens":
      microlens_layout.ensure(data_dir, world)
    else:
      generate.ensure(data_dir, world)

  def load(self, data_dir: str, args: Mapping[str, Any]) -> schema.RecDataset:
    splits = {s: tfds_world.open_split(data_dir, "impressions", s) for s in self.splits}
    cols = tfds_world.open_split(data_dir, "videos", "catalog").columns
    order = np.argsort(cols["video_id"])
    if not np.array_equal(cols["video_id"][order], np.arange(len(order))):
      raise schema.DataError(f"video ids in {data_dir} are not 0..N-1")
    train_end = float(args["train_until"] * args["horizon_seconds"])
    publish = cols["publish_time"][order].astype(np.float64)
    catalog = schema.Catalog(
        paths=np.array([os.path.join(data_dir, "videos", f)
                        for f in schema.strings(cols["filename"][order])]),
        title=decode_titles(cols["title"][order]),
        content_type=np.array(world_lib.CONTENT_TYPES)[cols["content_type"][order]],
        publish_time=publish, cold=schema.cold_start(publish, train_end),
        extra={k: cols[k][order] for k in ("num_frames", "topic")},
        duration=(cols["num_frames"][order] / float(args["fps"])).astype(np.float32))
    return schema.RecDataset(
        name="synthetic", catalog=catalog, splits=splits, label_columns=self.label_columns,
        capabilities=frozenset({schema.ORACLE, schema.VIDEO_FILES, schema.IMPRESSIONS,
                                schema.POSITIONS}),
        train_end=train_end)


DATASETS.register("synthetic", SyntheticWorld())
