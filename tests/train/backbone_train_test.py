"""Training a recommender on a pretrained backbone: weights arrive converted, frozen parameters
stay bit-identical, top_blocks trains only the last blocks, and the backbone has its own
learning rate."""

import functools

import jax
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.train import fixtures
from vidrec_jax.models import backbone_encoder
from vidrec_jax.models import backbones
from vidrec_jax.checkpoints import convert
from vidrec_jax.train import state
from vidrec_jax.train import steps

PREFIX = backbone_encoder.BACKBONE_PREFIX


def _args(config):
  return backbone_encoder.BackboneArgs.from_config(config.model)


def _config(mode: str, top_blocks: int = 1):
  c = helpers.load_config("smoke", "pretrained.py")
  c.model.backbone.update(train_mode=mode, top_blocks=top_blocks, from_cache=False)
  c.data.num_frames = 3
  return c


def _train(config, n_steps: int = 2):
  setup = fixtures.setup_on(jax.devices()[:2], (2, 1, 1), config)
  state = setup.init(0)
  before = jax.device_get(state.params)
  step = jax.jit(functools.partial(steps.train_step, setup))
  for i in range(n_steps):
    state, _ = step(state, fixtures.fake_batch(config, seed=i))
  return setup, convert.flat_params(before), convert.flat_params(jax.device_get(state.params))


class BackboneTrainingTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    helpers.require_pretrained("efficientnet_lite0")

  def test_frozen_backbone_is_bit_identical_and_pretrained(self):
    setup, before, after = _train(_config("frozen"))
    pretrained = backbones.converted_params("efficientnet_lite0")
    backbone_keys = [k for k in before if k.startswith(PREFIX)]
    self.assertNotEmpty(backbone_keys)
    for k in backbone_keys:
      np.testing.assert_array_equal(before[k], pretrained[k[len(PREFIX):]], err_msg=k)
      np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    # ...while the rest of the model did train.
    moved = [k for k in before if not k.startswith(PREFIX)
             and not np.array_equal(before[k], after[k])]
    self.assertGreater(len(moved), 5)
    labels = convert.flat_params(setup.labels)
    self.assertEqual({labels[k] for k in backbone_keys}, {"frozen"})

  def test_top_blocks_trains_only_the_last_used_blocks(self):
    config = _config("top_blocks", top_blocks=1)
    n_used, _ = backbone_encoder.used_blocks(_args(config))  # smoke: up to stage3 -> 6 blocks
    _, before, after = _train(config)
    changed = {k for k in before if k.startswith(PREFIX) and
               not np.array_equal(before[k], after[k])}
    last = f"{PREFIX}blocks/{n_used - 1}/"
    self.assertTrue(any(k.startswith(last) for k in changed), changed)
    for k in changed:
      self.assertTrue(k.startswith(last), f"{k} changed but is not in the last block")
      self.assertNotRegex(k, r"/(mean|var)$")  # BN statistics never move

  def test_backbone_learning_rate_factor_scales_its_updates(self):
    # Adam's first update is lr * g / (|g| + eps) per element, so the backbone's first-step
    # update is the factor times what the same parameter would get at the main learning rate.
    moves = {}
    for factor in (1.0, 0.1):
      config = _config("top_blocks", top_blocks=1)
      config.train.update(backbone_learning_rate_factor=factor, warmup_steps=0, grad_clip=1e9,
                          weight_decay=0.0)
      n_used, _ = backbone_encoder.used_blocks(_args(config))
      _, before, after = _train(config, n_steps=1)
      k = f"{PREFIX}blocks/{n_used - 1}/project_conv/kernel"
      moves[factor] = float(np.abs(after[k] - before[k]).max())
    self.assertGreater(moves[1.0], 0.0)
    self.assertAlmostEqual(moves[0.1] / moves[1.0], 0.1, delta=0.01)

  def test_labels_by_mode(self):
    config = _config("top_blocks", top_blocks=2)
    n_used, _ = backbone_encoder.used_blocks(_args(config))

    def label(path):
      # The optimizer label of one parameter of a model that has a backbone (the pretrained
      # part is active when its prefix appears among the parameters).
      return state.param_labels({path: 0, f"{PREFIX}stem_conv/bias": 0}, config.model)[path]

    self.assertEqual(label("content_proj/layers/0/kernel"), "default")
    self.assertEqual(label(f"{PREFIX}blocks/{n_used - 1}/dw_conv/kernel"), "backbone")
    self.assertEqual(label(f"{PREFIX}blocks/{n_used - 2}/dw_bn/scale"), "backbone")
    self.assertEqual(label(f"{PREFIX}blocks/{n_used - 2}/dw_bn/mean"), "frozen")
    self.assertEqual(label(f"{PREFIX}blocks/{n_used - 3}/dw_conv/kernel"), "frozen")
    self.assertEqual(label(f"{PREFIX}blocks/{n_used}/dw_conv/kernel"), "frozen")  # unused
    self.assertEqual(label(f"{PREFIX}head_conv/kernel"), "frozen")  # head unused at stage3
    self.assertEqual(label(f"{PREFIX}stem_conv/kernel"), "frozen")
    config.model.backbone.train_mode = "full"
    self.assertEqual(label(f"{PREFIX}stem_conv/kernel"), "backbone")
    self.assertEqual(label(f"{PREFIX}classifier/kernel"), "frozen")


if __name__ == "__main__":
  absltest.main()
