"""What training and evaluation share: the dataset, vocabularies, the model's inputs and its
setup on the mesh. Built once per run from the config; everything below it takes typed
arguments."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from vidrec_jax.data import features
from vidrec_jax.data import ops
from vidrec_jax.data import pipeline
from vidrec_jax.data.clips import CachedFeatures
from vidrec_jax.data.clips import ClipSampler
from vidrec_jax.data.clips import PixelFrames
from vidrec_jax.data.datasets import DataError
from vidrec_jax.data.datasets import RecDataset
from vidrec_jax.data.inputs import InputSpec
from vidrec_jax.data.sequences import ClickHistory
from vidrec_jax.data.titles import TitleInputs
from vidrec_jax.data.vocab import Vocab
from vidrec_jax.models import encoders
from vidrec_jax.models import recommender
from vidrec_jax.models import text_tower
from vidrec_jax.models.item_features import ITEM_FEATURES
from vidrec_jax.run_spec import RunSpec
from vidrec_jax.train import catalog as catalog_lib
from vidrec_jax.train import mesh as mesh_lib
from vidrec_jax.train import workdir as workdir_lib
from vidrec_jax.train.state import Setup


@dataclasses.dataclass
class Context:
  """A run's data handles, vocabularies, model inputs, mesh and setup."""

  run: RunSpec  # the run's resolved settings (vidrec_jax/run_spec.py)
  workdir: workdir_lib.Workdir
  dataset: RecDataset
  user_vocab: Vocab
  video_vocab: Vocab
  train_video_ids: np.ndarray  # video id of every train record, in record order
  spec: InputSpec
  setup: Setup

  @property
  def host0(self) -> bool:
    return jax.process_index() == 0

  @functools.cached_property
  def titles(self) -> TitleInputs | None:
    """Title inputs (cached embeddings or tokens), built once for training and evaluation;
    None when the model reads no titles."""
    catalog, m = self.dataset.catalog, self.run.model
    if self.spec.titles == "cached":
      return TitleInputs.cached(catalog.title, self.workdir.text, m.text.name, m.text.max_length)
    if self.spec.titles == "tokens":
      from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
      tok = text.load_tokenizer(m.text.name, m.text.max_length)
      return TitleInputs.tokenized(catalog.title, functools.partial(tok, length=m.text.max_length))
    return None

  @functools.cached_property
  def video_inputs(self) -> pipeline.VideoInputs | None:
    """The per-video item inputs besides frames (titles, content type, duration) that the
    pipelines add to each clip; None when the model reads none of them."""
    if (self.titles is None and not self.spec.content_type and not self.spec.duration
        and not self.spec.item_features):
      return None
    rows = None
    if self.spec.content_type:
      types = tuple(self.run.model.content_types)
      index = {t: i for i, t in enumerate(types)}
      rows = np.asarray([index.get(str(t), len(types))
                         for t in self.dataset.catalog.content_type], np.int32)
    durations = None
    if self.spec.duration:
      durations = self.dataset.catalog.duration
      if durations is None:
        raise DataError(f"model.item_duration: dataset {self.dataset.name!r} has no "
                        "video durations")
    features = {n: ITEM_FEATURES.get(n).values(self.dataset.catalog)
                for n in self.spec.item_features}
    return pipeline.VideoInputs(self.titles, rows, durations, features)

  @functools.cached_property
  def click_history(self) -> ClickHistory | None:
    """Every user's positives (clicks; every record of an implicit log) over all splits, for
    the watch histories of a history user tower; None when the model reads none."""
    if not self.spec.history:
      return None
    cols = [self.dataset.split(s).columns for s in self.dataset.splits]
    pos = [c["click"] > 0 if "click" in c else np.ones(len(c["user_id"]), bool) for c in cols]
    return ClickHistory(*(np.concatenate([c[k][p] for c, p in zip(cols, pos)])
                          for k in ("user_id", "video_id", "timestamp")))

  @functools.cached_property
  def catalog(self) -> dict | None:
    """The per-catalog arrays of a history user tower (train/catalog.py), on every device."""
    if not self.spec.history:
      return None
    return mesh_lib.replicate(catalog_lib.catalog_arrays(self), self.setup.mesh)

  @functools.cached_property
  def whitening(self) -> features.Whitening | None:
    """`model.backbone.whiten`'s map of the cached features, fitted on the training videos'
    frames (the same cache and split give the same map, so resuming, evaluating and exporting
    see what training saw); None when off."""
    b = self.run.model.backbone
    k = int(b.whiten)
    if k <= 0:
      return None
    flows = features.load_cache(self.workdir.flow) if b.whiten_flow else None
    return features.fit_whitening(features.load_cache(self.workdir.features),
                                  self.train_video_ids, k, flows)

  @property
  def loader_options(self) -> pipeline.LoaderOptions:
    d = self.run.data
    return pipeline.LoaderOptions(num_workers=d.num_workers, read_threads=d.read_threads,
                                  prefetch_batches=d.prefetch_batches)

  def _stored_caches(self, source: str) -> dict[str, str]:
    """Clip op -> the workdir cache it reads (data/ops.py `ClipOp.cache`), for the ops of
    `source` whose cache the item tower reads (its clip inputs, or the whitening's flow)."""
    dirs = ({"flow": self.workdir.flow} if encoders.reads_flow_cache(self.run.model)
            else {})
    return {k: dirs[op.cache] for k, op in ops.CLIP_OPS.items()
            if op.source == source and op.cache in dirs}

  def sampler(self, cache_videos: int) -> ClipSampler:
    """Clips of the model's inputs from decoded pixels or from the feature cache."""
    d = self.run.data
    source = ops.source_of(self.spec.clip)
    if source == ops.PIXELS:
      stored = self._stored_caches(ops.PIXELS)
      frames = PixelFrames(self.dataset.catalog, d.frame_size, d.normalization, cache_videos,
                           d.cache_frames, stored=stored, selection=d.frame_selection)
    elif source == ops.FEATURES:
      frames = CachedFeatures(self.workdir.features,
                              int(features.read_meta(self.workdir.features)["dim"]),
                              stored=self._stored_caches(ops.FEATURES),
                              whitening=self.whitening)
    else:
      frames = None
    return ClipSampler(frames, self.spec.clip, d.num_frames)


def prepare_data(run: RunSpec, wd: workdir_lib.Workdir,
                 prepare: bool = True) -> RecDataset:
  """The dataset, with every cache the model reads checked. With `prepare`, the dataset and
  caches are written first where they are missing (process 0 writes, the others wait); without,
  they must exist."""
  if prepare:
    workdir_lib.prepare_dataset(run, wd)
  dataset = workdir_lib.load_dataset(run, wd)
  if prepare:
    workdir_lib.prepare_text_cache(run, wd, dataset)
  workdir_lib.prepare_feature_cache(run, wd, dataset, extract_missing=prepare)
  workdir_lib.prepare_flow_cache(run, wd, dataset, extract_missing=prepare)
  return dataset


def cache_fields(run: RunSpec, wd: workdir_lib.Workdir) -> dict[str, str]:
  """`config.data` field -> directory, for each cache of `wd` that `prepare_data` writes for
  this model: what runs that share these caches (a sweep's trials) point at."""
  used = {"feature_cache": (workdir_lib.uses_feature_cache(run), wd.features),
          "text_cache": (text_tower.title_mode(run.model) == "cached", wd.text),
          "flow_cache": (encoders.reads_flow_cache(run.model), wd.flow)}
  return {f"data.{k}": path for k, (reads, path) in used.items() if reads}


def make_context(run: RunSpec, root: str, mesh=None,
                 prepare: bool = True) -> Context:
  """The run's context. With `prepare`, the dataset and caches are written first where they are
  missing (process 0 writes, the others wait); without, they must exist."""
  wd = workdir_lib.Workdir.of(run, root)
  dataset = prepare_data(run, wd, prepare)
  train = dataset.split("train").columns
  # Vocabularies come from the training split only: anything else is out-of-vocabulary.
  user_vocab = Vocab(train["user_id"], int(train["user_id"].max()))
  video_vocab = Vocab(train["video_id"], len(dataset.catalog) - 1)
  mesh = mesh if mesh is not None else mesh_lib.make_mesh(run.mesh)
  setup = Setup(run, user_vocab.size, video_vocab.size, mesh)
  return Context(run, wd, dataset, user_vocab, video_vocab, train["video_id"],
                 recommender.input_spec(run.model), setup)

