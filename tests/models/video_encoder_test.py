"""The spatio-temporal encoder's parts: masks, causality, the pyramid, fusion and the flow stream's
cross-modality initialisation, and one training step of each part on the 8-device mesh."""


import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized
from flax import nnx

from configs import encoder_ablation
from tests import helpers
from tests.train import fixtures
from vidrec_jax import validate
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.data import flow
from vidrec_jax.models import poolings
from vidrec_jax.models import video_encoder

B, T, S = 3, 7, 16  # odd sizes: shape bugs show


def make_encoder(dtype=jnp.float32, **overrides) -> video_encoder.TwoStreamEncoder:
  """An encoder whose attention blocks are not the identity: the residual gates that start at
  zero get random values, as after some training."""
  kw = dict(channels=(4, 8), features=8, motion=False, flow=True, flow_channels=(4, 8),
            flow_init="scratch", flow_source="device", spatial_attention=True,
            temporal_attention="causal",
            attention_layers=2, attention_heads=2, fusion="concat")
  kw.update(overrides)
  enc = video_encoder.TwoStreamEncoder(**kw, dtype=dtype, param_dtype=jnp.float32,
                                       rngs=nnx.Rngs(0))
  rng = np.random.default_rng(3)
  for _, p in nnx.iter_graph(enc):
    if isinstance(p, nnx.Param) and p[...].shape == (2,) and not np.any(p[...]):
      p[...] = jnp.asarray(rng.normal(0, 0.3, p[...].shape), jnp.float32)
  return enc


def clip(seed: int = 0, valid=(7, 4, 2)) -> dict:
  rng = np.random.default_rng(seed)
  pixels = rng.integers(0, 256, (B, T, S, S, 6)).astype(np.float32)
  mask = (np.arange(T)[None] < np.array(valid)[:, None]).astype(np.float32)
  return {"frames": jnp.asarray(pixels[..., :3] / 127.5 - 1), "mask": jnp.asarray(mask),
          "frame_pairs": jnp.asarray(pixels)}


def garbage_in_padding(c: dict, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  pad = c["mask"] == 0
  out = dict(c)
  for k in ("frames", "frame_pairs"):
    noise = rng.normal(0, 300, c[k].shape).astype(np.float32)
    out[k] = jnp.where(pad[..., None, None, None], noise, c[k])
  return out


class EncoderTest(parameterized.TestCase):

  @parameterized.parameters("concat", "gated", "cross_attention")
  def test_padded_frames_change_nothing(self, fusion):
    for temporal in ("causal", "bidirectional"):
      enc = make_encoder(fusion=fusion, temporal_attention=temporal)
      pool = poolings.PyramidPooling(8, dtype=jnp.float32, param_dtype=jnp.float32,
                                     rngs=nnx.Rngs(1))
      c = clip()
      x, _ = enc(c)
      y, _ = enc(garbage_in_padding(c, 1))
      np.testing.assert_allclose(x, y, atol=1e-5)
      self.assertTrue(np.all(np.asarray(x)[np.asarray(c["mask"]) == 0] == 0))
      np.testing.assert_allclose(pool(x, c["mask"]), pool(y, c["mask"]), atol=1e-5)

  @parameterized.parameters("concat", "gated", "cross_attention")
  def test_causal_output_at_t_never_depends_on_later_frames(self, fusion):
    enc = make_encoder(fusion=fusion)
    c = clip(valid=(7, 7, 7))
    x, _ = enc(c)
    t = 3
    rng = np.random.default_rng(5)
    later = dict(c)
    for k in ("frames", "frame_pairs"):
      changed = np.asarray(c[k]).copy()
      changed[:, t + 1:] = rng.uniform(0, 255, changed[:, t + 1:].shape)
      later[k] = jnp.asarray(changed)
    y, _ = enc(later)
    np.testing.assert_allclose(x[:, :t + 1], y[:, :t + 1], atol=1e-5)
    self.assertGreater(float(jnp.abs(x[:, t + 1:] - y[:, t + 1:]).max()), 1e-3)
    # Bidirectional attention does look ahead.
    bi = make_encoder(fusion=fusion, temporal_attention="bidirectional")
    self.assertGreater(float(jnp.abs(bi(c)[0][:, :t + 1] - bi(later)[0][:, :t + 1]).max()), 1e-3)

  def test_flow_stream_reads_the_flow_of_each_pair(self):
    enc = make_encoder(spatial_attention=False, temporal_attention="none")
    c = clip()
    _, inter = enc(c)
    self.assertEqual(inter["flow"].shape, (B, T, S, S, 2))
    # Identical frames in a pair: no motion.
    same = dict(c, frame_pairs=jnp.concatenate([c["frame_pairs"][..., :3]] * 2, axis=-1))
    _, still = enc(same)
    self.assertLess(float(jnp.abs(still["flow"]).max()), 1e-3)

  def test_loader_flow_gives_the_device_flow_result(self):
    """flow_source='loader' reads the flow the loader estimated; given the same fields, the
    encoder (same parameters) computes what it computes from the pixel pairs on device."""
    device = make_encoder(spatial_attention=False)
    loader = make_encoder(spatial_attention=False, flow_source="loader")
    c = clip()
    pairs = np.asarray(c["frame_pairs"]).astype(np.uint8).reshape((B * T, S, S, 6))
    field = np.asarray(flow.estimate_flow(pairs[..., :3], pairs[..., 3:]))
    field = field.reshape((B, T, S, S, 2)) * np.asarray(c["mask"])[..., None, None, None]
    from_loader = {k: v for k, v in c.items() if k != "frame_pairs"}
    from_loader["flow"] = jnp.asarray(field)
    np.testing.assert_allclose(device(c)[0], loader(from_loader)[0], atol=2e-4)
    self.assertEqual(video_encoder.TwoStreamEncoder.clip_inputs(
        motion=False, flow=True, flow_source="loader"), ("frames", "mask", "flow"))

  def test_attention_blocks_start_as_the_identity(self):
    plain = video_encoder.TwoStreamEncoder(
        channels=(4, 8), features=8, motion=False, flow=False, flow_channels=(4, 8),
        flow_init="scratch", flow_source="device", spatial_attention=False,
        temporal_attention="none",
        attention_layers=1, attention_heads=2, fusion="concat", dtype=jnp.float32,
        param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    attend = video_encoder.TwoStreamEncoder(
        channels=(4, 8), features=8, motion=False, flow=False, flow_channels=(4, 8),
        flow_init="scratch", flow_source="device", spatial_attention=True,
        temporal_attention="bidirectional",
        attention_layers=2, attention_heads=2, fusion="concat", dtype=jnp.float32,
        param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    for a, b in list(zip(plain.rgb, attend.rgb)) + [(plain.rgb_proj, attend.rgb_proj)]:
      b.kernel[...], b.bias[...] = a.kernel[...], a.bias[...]
    # The same RGB stream and attention that starts as the identity: equal outputs.
    np.testing.assert_allclose(plain(clip())[0], attend(clip())[0], atol=1e-6)

  def test_cross_modality_init_averages_the_first_rgb_kernel(self):
    enc = make_encoder(flow_init="rgb")
    rgb0, flow0 = enc.rgb[0].kernel[...], enc.flow[0].kernel[...]
    self.assertEqual(flow0.shape[2], 2)
    for ch in range(2):
      np.testing.assert_allclose(flow0[:, :, ch], rgb0.mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(enc.rgb[1].kernel[...], enc.flow[1].kernel[...])
    scratch = make_encoder(flow_init="scratch")
    self.assertFalse(np.allclose(scratch.flow[1].kernel[...], scratch.rgb[1].kernel[...]))

  def test_bfloat16(self):
    enc = make_encoder(jnp.bfloat16, fusion="gated")
    x, _ = enc(clip())
    self.assertEqual(x.dtype, jnp.bfloat16)
    self.assertTrue(np.all(np.isfinite(np.asarray(x, np.float32))))


class PoolingTest(absltest.TestCase):

  def test_pyramid_gives_one_size_for_any_length(self):
    pool = poolings.PyramidPooling(6, dtype=jnp.float32, param_dtype=jnp.float32,
                                   rngs=nnx.Rngs(0))
    for t in (5, 50):
      x = jnp.asarray(np.random.default_rng(t).normal(size=(2, t, 6)), jnp.float32)
      out = pool(x, jnp.ones((2, t)))
      self.assertEqual(out.shape, (2, pool.out_features))
    self.assertEqual(pool.out_features, 8 * 6)

  def test_pyramid_levels_come_from_the_pooling_args(self):
    config = helpers.load_config("smoke")
    config.model.pooling = "pyramid"
    config.model.pooling_args = dict(levels=(1, 3))
    self.assertEqual(poolings.pooling_args(config.model), {"levels": (1, 3)})
    pool = poolings.PyramidPooling(6, levels=(1, 3), dtype=jnp.float32,
                                   param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 6)), jnp.float32)
    out = pool(x, jnp.ones((2, 9)))
    self.assertEqual(out.shape, (2, 5 * 6))  # 1 + 3 runs and the attention pooling
    # The three runs of nine frames are frames 0-2, 3-5 and 6-8.
    np.testing.assert_allclose(out[0, 6:12], x[0, :3].mean(0), rtol=1e-5)
    for args, message in ((dict(levels=(2, 2)), "model.pooling_args.levels"),
                          (dict(levels=()), "model.pooling_args.levels"),
                          (dict(runs=3), "unknown argument.*runs")):
      config.model.pooling_args = args
      with self.assertRaisesRegex(ConfigError, message):
        validate.validate(config)

  def test_segment_means_by_hand(self):
    x = jnp.arange(6, dtype=jnp.float32).reshape(1, 6, 1) + 1  # frames 1..6, the last padded
    mask = jnp.asarray([[1, 1, 1, 1, 1, 0]], jnp.float32)
    # Five valid frames in two runs: floor(j * 2 / 5) -> [0, 0, 0, 1, 1].
    np.testing.assert_allclose(poolings.segment_means(x, mask, 2)[0, :, 0], [2.0, 4.5])
    # Four runs of five frames: [0, 0, 1, 2, 3].
    np.testing.assert_allclose(poolings.segment_means(x, mask, 4)[0, :, 0],
                               [1.5, 3.0, 4.0, 5.0])
    # Two frames in four runs: the empty runs are 0.
    short = jnp.asarray([[1, 1, 0, 0, 0, 0]], jnp.float32)
    np.testing.assert_allclose(poolings.segment_means(x, short, 4)[0, :, 0], [1, 0, 2, 0])

  def test_order_shows_in_the_pyramid_not_in_the_mean(self):
    a = jnp.asarray([[[1.0], [1.0], [5.0], [5.0]]])
    b = a[:, ::-1]
    mask = jnp.ones((1, 4))
    pool = poolings.PyramidPooling(1, dtype=jnp.float32, param_dtype=jnp.float32,
                                   rngs=nnx.Rngs(0))
    np.testing.assert_allclose(poolings.masked_mean(a, mask), poolings.masked_mean(b, mask))
    self.assertFalse(np.allclose(pool(a, mask), pool(b, mask)))

  def test_attention_pool_is_a_masked_convex_combination(self):
    pool = poolings.AttentionPooling(3, dtype=jnp.float32, param_dtype=jnp.float32,
                                     rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)), jnp.float32)
    mask = jnp.asarray([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], jnp.float32)
    out = np.asarray(pool(x, mask))
    lo, hi = np.asarray(x[0, :2]).min(0), np.asarray(x[0, :2]).max(0)
    self.assertTrue(np.all((out[0] >= lo - 1e-6) & (out[0] <= hi + 1e-6)))
    np.testing.assert_array_equal(out[1], 0)


class ConfigTest(parameterized.TestCase):

  @parameterized.parameters(
      ("temporal_attention", "forward", "allowed: none, causal, bidirectional"),
      ("fusion", "sum", "allowed: concat, gated, cross_attention"),
      ("flow_init", "imagenet", "allowed: scratch, rgb"),
      ("flow_source", "disk", "allowed: device, loader"),
      ("attention_heads", 3, "must divide features=8"))
  def test_bad_values_are_named(self, field, value, allowed):
    c = encoder_ablation.get_config("smoke,both")
    c.model.frame_encoder[field] = value
    with self.assertRaisesRegex(ConfigError, f"model.frame_encoder.{field}.*{allowed}"):
      validate.validate(c)

  def test_rgb_init_needs_the_rgb_widths(self):
    c = encoder_ablation.get_config("smoke,flow")
    c.model.frame_encoder.update(flow_init="rgb", flow_channels=(4, 6))
    with self.assertRaisesRegex(ConfigError, "flow_channels must equal channels"):
      validate.validate(c)

  def test_one_taste_kind(self):
    with self.assertRaisesRegex(ValueError, "at most one taste kind"):
      encoder_ablation.get_config("motion,order")


class MeshTest(parameterized.TestCase):
  """Every new part trains one step with parameters and batch sharded over 8 devices."""

  @parameterized.named_parameters(
      ("flow_concat_pyramid", dict(fusion="concat"), "pyramid"),
      ("gated_spatial_bidirectional", dict(fusion="gated", spatial_attention=True,
                                           temporal_attention="bidirectional"), "attention"),
      ("cross_attention_rgb_init", dict(fusion="cross_attention", flow_init="rgb"),
       "masked_mean"),
      ("loader_flow_gated", dict(fusion="gated", flow_source="loader"), "pyramid"))
  def test_one_step_on_eight_devices(self, encoder_overrides, pooling):
    config = helpers.load_config("smoke,both", "encoder_ablation.py")
    config.model.frame_encoder.update(encoder_overrides)
    config.model.pooling = pooling
    validate.validate(config)
    # The first step's learning rate is 0 (warm-up), and the attention's weights get gradients
    # once their residual gates, which start at zero, have moved (after step 2).
    before, after, metrics = fixtures.train_on_eight_devices(config, (1, 2, 3))
    self.assertTrue(np.isfinite(float(metrics["loss"])))
    enc_before, enc_after = before["frame_encoder"], after["frame_encoder"]
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.any(a != b)), enc_before,
                                           enc_after))
    self.assertTrue(all(changed), "every encoder parameter gets a gradient")


if __name__ == "__main__":
  absltest.main()
