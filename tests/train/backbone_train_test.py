"""Training a recommender on a pretrained backbone: weights arrive converted, frozen parameters
stay bit-identical, top_blocks trains only the last blocks, and the backbone has its own
learning rate."""

import functools

import jax
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.train import fixtures
from vidrec_jax.data import motion
from vidrec_jax.data.motion import HISTOGRAM_FEATURES
from vidrec_jax.models import flow_stream
from vidrec_jax.models.backbones import part as backbone_part
from vidrec_jax.models import backbones
from vidrec_jax import validate
from vidrec_jax.checkpoints import convert
from vidrec_jax.train import state
from vidrec_jax.train import steps

PREFIX = backbone_part.BACKBONE_PREFIX


def _args(config):
  return backbone_part.BackboneArgs.from_config(config.model)


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

  def test_flow_stream_trains_beside_the_frozen_backbone(self):
    c = _config("frozen")
    c.model.frame_encoder.update(flow=True, flow_source="device", flow_channels=(4, 6),
                                 flow_size=c.data.frame_size // 4)
    _, before, after = _train(c)
    flow_keys = [k for k in before if k.startswith("frame_encoder/flow")]
    self.assertNotEmpty(flow_keys)
    for k in flow_keys:
      self.assertFalse(np.array_equal(before[k], after[k]), k)
    for k in before:
      if k.startswith(PREFIX):
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)

  def test_flow_from_cached_features_must_be_the_flow_cache(self):
    c = helpers.load_config("smoke,flow", "pretrained.py")
    self.assertEqual(c.model.frame_encoder.flow_source, "cache")
    c.model.frame_encoder.flow_source = "device"
    with self.assertRaisesRegex(Exception, "flow_source.*flow cache too"):
      validate.validate(c)
    c.model.frame_encoder.update(flow_source="cache", flow_size=c.data.frame_size - 1)
    with self.assertRaisesRegex(Exception, "flow_size.*a divisor of data.frame_size"):
      validate.validate(c)
    c.model.frame_encoder.update(flow_size=0, flow_stream="optical")
    with self.assertRaisesRegex(Exception, "flow_stream.*allowed: conv, histogram"):
      validate.validate(c)

  def test_top_blocks_trains_only_the_last_used_blocks(self):
    config = _config("top_blocks", top_blocks=1)
    n_used, _ = backbone_part.used_blocks(_args(config))  # smoke: up to stage3 -> 6 blocks
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
      n_used, _ = backbone_part.used_blocks(_args(config))
      _, before, after = _train(config, n_steps=1)
      k = f"{PREFIX}blocks/{n_used - 1}/project_conv/kernel"
      moves[factor] = float(np.abs(after[k] - before[k]).max())
    self.assertGreater(moves[1.0], 0.0)
    self.assertAlmostEqual(moves[0.1] / moves[1.0], 0.1, delta=0.01)

  def test_labels_by_mode(self):
    config = _config("top_blocks", top_blocks=2)
    n_used, _ = backbone_part.used_blocks(_args(config))

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


class InputDropoutTest(absltest.TestCase):

  def test_dropout_in_training_only(self):
    helpers.require_pretrained("efficientnet_lite0")
    c = helpers.load_config("smoke", "pretrained.py")
    c.model.frame_encoder.input_dropout = 0.5
    c.mesh.shape = dict(data=1, fsdp=1, model=1)
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), c)
    model = setup.model(setup.init(0).params)
    batch = fixtures.fake_batch(c)
    evals = [np.asarray(model.encode_items(batch, batch["video"])[0]) for _ in range(2)]
    np.testing.assert_array_equal(evals[0], evals[1])
    keys = jax.random.split(jax.random.key(0), 2)
    c0 = np.asarray(model.encode_content(batch, key=keys[0])[0])
    c1 = np.asarray(model.encode_content(batch, key=keys[1])[0])
    plain = np.asarray(model.encode_content(batch)[0])
    self.assertFalse(np.allclose(c0, c1))
    self.assertFalse(np.allclose(c0, plain))
    c.model.frame_encoder.input_dropout = 1.0
    with self.assertRaisesRegex(Exception, "input_dropout.*a rate in"):
      validate.validate(c)

  def test_frame_average_gives_every_valid_frame_the_same_output(self):
    helpers.require_pretrained("efficientnet_lite0")
    c = helpers.load_config("smoke", "pretrained.py")
    c.model.frame_encoder.frame_average = True
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), c)
    enc = setup.model(setup.init(0).params).frame_encoder
    batch = fixtures.fake_batch(c)
    mask = np.asarray(batch["mask"]).copy()
    mask[:, -2:] = 0.0  # padded frames
    batch["mask"] = mask
    feats = np.asarray(enc(batch)[0])
    valid = np.asarray(batch["mask"]) > 0
    for b in range(feats.shape[0]):
      rows = feats[b][valid[b]]
      np.testing.assert_allclose(rows, np.broadcast_to(rows[:1], rows.shape), atol=1e-5)
    # Frames apart, the inputs are not averaged: the outputs differ across frames.
    c.model.frame_encoder.frame_average = False
    setup = fixtures.setup_on(jax.devices()[:1], (1, 1, 1), c)
    feats = np.asarray(setup.model(setup.init(0).params).frame_encoder(batch)[0])
    self.assertFalse(np.allclose(feats[0][valid[0]], feats[0][valid[0]][:1], atol=1e-5))


class FlowHistogramTest(absltest.TestCase):

  def test_a_square_moving_right_by_hand(self):
    field = np.zeros((2, 32, 32, 2), np.float32)
    field[0, 4:12, 4:12, 0] = 2.0  # 8x8 pixels, 2 px right = 1.0 in 1/16 of the frame height
    field[1, 4:12, 4:12, 1] = -0.5  # up, 0.25
    h = np.asarray(flow_stream.flow_histograms(jax.numpy.asarray(field)))
    self.assertEqual(h.shape, (2, HISTOGRAM_FEATURES))
    nb, nm = motion.ORIENTATION_BINS, len(motion.MAGNITUDE_EDGES)
    orient, mags, rest = h[:, :nb], h[:, nb:nb + nm], h[:, nb + nm:]
    np.testing.assert_allclose(orient[0], np.eye(nb)[4], atol=1e-6)  # angle 0: bin 4 of 8
    np.testing.assert_allclose(orient[1], np.eye(nb)[2], atol=1e-6)  # angle -pi/2: bin 2
    edges = np.asarray(motion.MAGNITUDE_EDGES)
    for row, speed in ((0, 1.0), (1, 0.25)):
      k = int(np.sum(edges[1:] < speed))
      np.testing.assert_allclose(mags[row], np.eye(nm)[k], atol=1e-6)
    share = 64 / 1024
    np.testing.assert_allclose(rest[0], [share, share * 1.0, share * 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(rest[1], [share, share * 0.25, 0.0, -share * 0.25], atol=1e-6)
    # The same motion at twice the frame size reads the same.
    big = np.repeat(np.repeat(field, 2, axis=1), 2, axis=2) * 2
    np.testing.assert_allclose(flow_stream.flow_histograms(jax.numpy.asarray(big)), h,
                               atol=1e-5)
    # The loader's numpy twin gives the same numbers.
    np.testing.assert_allclose(motion.flow_histograms(field), h, atol=1e-6)

  def test_histogram_stream_has_no_parameters_and_trains(self):
    helpers.require_pretrained("efficientnet_lite0")
    c = _config("frozen")
    c.model.frame_encoder.update(flow=True, flow_source="device", flow_stream="histogram")
    _, before, after = _train(c)
    self.assertEmpty([k for k in before if k.startswith("frame_encoder/flow")])
    mix = [k for k in before if k.startswith("frame_encoder/mix")]
    self.assertTrue(any(not np.array_equal(before[k], after[k]) for k in mix))


if __name__ == "__main__":
  absltest.main()
