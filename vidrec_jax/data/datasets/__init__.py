"""Dataset registry: `get(name, data_dir, args) -> RecDataset`, one schema for every dataset.

`config.data.dataset` is a section: `name` (a registered dataset) and that dataset's arguments
(the synthetic world's sizes and seed, a folder's path, ...). An entry is a `DatasetSource`: it
checks its arguments, prepares the data once (generates or converts it into `data_dir`, on
process 0) and loads it into the schema of `schema.py`.

Adding a dataset: one file in this package defining a `DatasetSource` subclass, with one
`DATASETS.register(...)` call in it (the registry finds the file by itself: registry.py), and a
test; a dataset outside the library is a module named in `config.imports`.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping

from vidrec_jax.data.datasets.schema import CAPABILITIES
from vidrec_jax.data.datasets.schema import IMPRESSIONS
from vidrec_jax.data.datasets.schema import ORACLE
from vidrec_jax.data.datasets.schema import POSITIONS
from vidrec_jax.data.datasets.schema import VIDEO_FILES
from vidrec_jax.data.datasets.schema import Catalog
from vidrec_jax.data.datasets.schema import DataError
from vidrec_jax.data.datasets.schema import RecDataset
from vidrec_jax.data.datasets.schema import Split
from vidrec_jax.data.datasets.schema import cold_start
from vidrec_jax.registry import Registry


class DatasetSource(abc.ABC):
  """A registered dataset: argument checks, one-time preparation, loading into the schema."""

  # The label columns its records carry; heads whose labels are missing are refused.
  label_columns: tuple[str, ...] = ()
  # Whether its catalog knows every video's length (Catalog.duration), which the item tower
  # can read (model.item_duration).
  durations: bool = False
  # Its splits ('train' first).
  splits: tuple[str, ...] = ("train",)
  # Its arguments (`data.dataset.<key>`, `name` aside) with the values a config gets when it
  # switches to this dataset by `--config.data.dataset.name` (vidrec_jax/cli.py); None: it
  # cannot be switched to (its arguments have no sensible defaults: start from a config file).
  arguments: dict[str, Any] | None = None

  def validate(self, args: Mapping[str, Any]) -> None:
    """Raises config_checks.ConfigError on a bad argument (named `data.dataset.<key>`); `args`
    is the `config.data.dataset` section, `name` included."""
    del args

  def record_defaults(self) -> dict[str, Any]:
    """`data.dataset.<key>` -> the value that does what the dataset did before the argument
    existed: a workdir recorded without the key resumes when the config sets this value
    (vidrec_jax/config_io.py)."""
    return {}

  def prepare(self, data_dir: str, args: Mapping[str, Any]) -> None:
    """Writes the dataset into `data_dir` unless an identical one is already there (called on
    process 0 only, and only for a data_dir the run owns)."""
    del data_dir, args

  @abc.abstractmethod
  def load(self, data_dir: str, args: Mapping[str, Any]) -> RecDataset:
    """The prepared dataset in `data_dir`, or a one-line DataError."""


DATASETS: Registry[DatasetSource] = Registry("dataset", package=__name__)


def get(args: Mapping[str, Any], data_dir: str) -> RecDataset:
  """The dataset `args["name"]` (a `config.data.dataset` section) read from `data_dir`
  (prepared before; see `DatasetSource.prepare`)."""
  return DATASETS.get(args["name"]).load(data_dir, args)


__all__ = ["CAPABILITIES", "DATASETS", "IMPRESSIONS", "ORACLE", "POSITIONS", "VIDEO_FILES",
           "Catalog", "DataError", "DatasetSource", "RecDataset", "Split", "cold_start", "get"]
