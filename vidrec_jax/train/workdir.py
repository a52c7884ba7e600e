"""The workdir layout, and preparing what a run reads before it starts: the dataset (generated or
converted once), the backbone feature cache and the title embedding cache.

  WORKDIR/
    config.json         the resolved config of record (vidrec_jax/config_io.py)
    data/               the dataset, unless config.data.data_dir points elsewhere
    features/           backbone feature cache (config.data.feature_cache overrides)
    flow/               optical-flow cache, flow_source='cache' (config.data.flow_cache overrides)
    text_features/      title embedding cache (config.data.text_cache overrides)
    checkpoints/, checkpoints_best/, tensorboard/, eval/metrics.json

Preparation runs on process 0 and the other processes wait at a barrier (a cache sharded over
processes, the feature cache, is written by all of them).
"""

from __future__ import annotations

import dataclasses
import os

from absl import logging

from vidrec_jax.data import datasets
from vidrec_jax.data import features
from vidrec_jax.data import flow_cache
from vidrec_jax.models import encoders
from vidrec_jax.models import text_tower
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.train import distributed


@dataclasses.dataclass(frozen=True)
class Workdir:
  """Where a run reads and writes."""

  root: str
  data: str
  features: str
  text: str
  flow: str

  @classmethod
  def of(cls, run: RunSpec, root: str) -> "Workdir":
    d = run.data
    return cls(root=root, data=d.data_dir or os.path.join(root, "data"),
               features=d.feature_cache or os.path.join(root, "features"),
               text=d.text_cache or os.path.join(root, "text_features"),
               flow=d.flow_cache or os.path.join(root, "flow"))


def source(run: RunSpec) -> datasets.DatasetSource:
  """The registered dataset `config.data.dataset.name`."""
  return datasets.DATASETS.get(run.data.dataset.name)


def prepare_dataset(run: RunSpec, wd: Workdir) -> None:
  """Process 0 writes the dataset into a run-owned data dir unless it is there already; a
  data_dir given in the config is only read."""
  if run.data.data_dir:
    return
  distributed.host0_then_barrier("vidrec_dataset_ready",
                                 lambda: source(run).prepare(wd.data, run.data.dataset))


def load_dataset(run: RunSpec, wd: Workdir) -> datasets.RecDataset:
  return datasets.get(run.data.dataset, wd.data)


def uses_feature_cache(run: RunSpec) -> bool:
  """Whether the item tower reads cached backbone features instead of pixels."""
  return "features" in encoders.clip_inputs(run.model)


def prepare_feature_cache(run: RunSpec, wd: Workdir,
                          dataset: datasets.RecDataset, extract_missing: bool = True) -> None:
  """When the model reads cached backbone features: extracts a missing run-owned cache (with
  `extract_missing`), then checks that the cache fits the run (a one-line CacheError)."""
  if not uses_feature_cache(run):
    return
  from vidrec_jax.train import extract  # pylint: disable=g-import-not-at-top
  if extract_missing and not run.data.feature_cache and not os.path.exists(
      os.path.join(wd.features, features.META)):
    logging.info("no feature cache in %s yet: extracting it first", wd.features)
    extract.extract(run, dataset, wd.features)
  features.check_meta(wd.features, extract.expected_meta(run))


def prepare_flow_cache(run: RunSpec, wd: Workdir,
                       dataset: datasets.RecDataset, extract_missing: bool = True) -> None:
  """When the flow stream reads the offline flow cache: writes a missing one (every process a
  shard, with `extract_missing`), then checks that it fits the run (a one-line CacheError)."""
  form = encoders.flow_cache_form(run.model)
  if form is None:
    return
  if extract_missing and not os.path.exists(os.path.join(wd.flow, features.META)):
    from vidrec_jax.train import extract  # pylint: disable=g-import-not-at-top
    logging.info("no flow cache in %s yet: estimating it first", wd.flow)
    extract.extract_flow(dataset.catalog, run.data, wd.flow, form)
  flow_cache.check(wd.flow, run.data, form)


def prepare_text_cache(run: RunSpec, wd: Workdir,
                       dataset: datasets.RecDataset) -> None:
  """Process 0 embeds the catalog's titles when a frozen text tower needs them and the cache is
  missing or stale; the other processes wait for it."""
  if text_tower.title_mode(run.model) != "cached":
    return
  from vidrec_jax.train import text_cache  # pylint: disable=g-import-not-at-top
  args = text_tower.TextArgs.from_config(run.model)
  distributed.host0_then_barrier(
      "vidrec_text_cache_ready",
      lambda: text_cache.extract(args.name, args.max_length, dataset.catalog.title, wd.text))
