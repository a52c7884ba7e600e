"""Shared fixtures: the smoke config and a world generated once per test process."""

from __future__ import annotations

import functools
import importlib.util
import os
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(arg: str = "smoke", name: str = "demo.py"):
  spec = importlib.util.spec_from_file_location("cfg_" + name[:-3], os.path.join(REPO, "configs",
                                                                                name))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


@functools.cache
def smoke_world_dir() -> str:
  """A smoke-sized world written once per test process."""
  from vidrec_jax.data import generate  # pylint: disable=g-import-not-at-top
  from vidrec_jax.data.datasets import synthetic  # pylint: disable=g-import-not-at-top
  d = tempfile.mkdtemp(prefix="vidrec_world_")
  generate.generate(d, synthetic.world_args(load_config().data.dataset), show_progress=False)
  return d


def require_pretrained(name: str) -> None:
  """Skips the calling test (class) when the pretrained weights of `name` are not installed."""
  from absl.testing import absltest  # pylint: disable=g-import-not-at-top
  from vidrec_jax.models import backbones  # pylint: disable=g-import-not-at-top
  try:
    backbones.BACKBONES.get(name).default_checkpoint()
  except FileNotFoundError as e:
    raise absltest.SkipTest(f"pretrained weights of {name} are not installed: {e}") from e


def require_text_model(name: str = "all-MiniLM-L6-v2") -> None:
  """Skips the calling test (class) when the sentence encoder's weights or `tokenizers` are
  missing."""
  from absl.testing import absltest  # pylint: disable=g-import-not-at-top
  from vidrec_jax.models import text  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("tokenizers") is None:
    raise absltest.SkipTest("the `tokenizers` package is not installed")
  try:
    text.model_dir(name)
  except FileNotFoundError as e:
    raise absltest.SkipTest(f"the {name} weights are not installed: {e}") from e
