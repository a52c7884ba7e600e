"""Model parts: registry errors, masked pooling, padding invariance, the OOV row."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx

from tests import helpers
from tests.train import fixtures
from vidrec_jax.models import poolings
from vidrec_jax.models import recommender
from vidrec_jax.models import user_towers
from vidrec_jax.registry import UnknownNameError


class ModelTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.config = helpers.load_config()
    self.model = recommender.build(self.config.model, fixtures.NUM_USERS, fixtures.NUM_VIDEOS,
                                   nnx.Rngs(0))

  def test_id_tables_are_padded_to_a_whole_multiple(self):
    self.assertEqual(user_towers.vocab_rows(127, 128), 128)  # 127 ids + the OOV row
    self.assertEqual(user_towers.vocab_rows(128, 128), 256)
    config = helpers.load_config()
    model = recommender.build(config.model, 300, 40, nnx.Rngs(0))
    self.assertEqual(model.user_tower.user_embed.embedding.shape[0], 384)
    self.assertEqual(model.video_embed.embedding.shape[0], 128)

  def test_unknown_names_list_the_registered_ones(self):
    cfg = self.config.model
    cfg.name = "nope"
    with self.assertRaisesRegex(UnknownNameError,
                                "unknown model 'nope'; registered: policy, sequential, two_tower"):
      recommender.build(cfg, 3, 3, nnx.Rngs(0))
    cfg.name = "two_tower"
    cfg.frame_encoder.name = "resnet9000"
    with self.assertRaisesRegex(UnknownNameError, "frame encoder 'resnet9000'.*backbone, conv"):
      recommender.build(cfg, 3, 3, nnx.Rngs(0))

  def test_masked_pooling_ignores_padding(self):
    x = jnp.array([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])
    mask = jnp.array([[1.0, 1.0, 0.0]])
    np.testing.assert_allclose(poolings.masked_mean(x, mask), [[2.0, 3.0]])
    np.testing.assert_allclose(poolings.masked_max(x, mask), [[3.0, 4.0]])

  def test_item_vector_does_not_depend_on_padded_frames(self):
    b = fixtures.fake_batch(self.config)
    b["mask"][:, -2:] = 0
    noisy = dict(b, frames=b["frames"].copy(), motion=b["motion"].copy())
    noisy["frames"][:, -2:] = 7.0
    noisy["motion"][:, -2:] = -3.0
    v1, _ = self.model.encode_items(b, b["video"])
    v2, _ = self.model.encode_items(noisy, b["video"])
    np.testing.assert_allclose(v1, v2, atol=1e-6)

  def test_motion_input_changes_the_item(self):
    b = fixtures.fake_batch(self.config)
    b["mask"][:] = 1
    reversed_motion = dict(b, motion=-b["motion"])  # the same frames played backwards
    v1, _ = self.model.encode_items(b, b["video"])
    v2, _ = self.model.encode_items(reversed_motion, b["video"])
    self.assertGreater(float(jnp.abs(v1 - v2).max()), 1e-4)

  def test_cold_videos_use_the_oov_row_and_id_dropout(self):
    oov = jnp.full((4,), fixtures.NUM_VIDEOS)
    emb = self.model.video_embed(oov)
    self.assertEqual(emb.shape, (4, self.config.model.embed_dim))
    b = fixtures.fake_batch(self.config)
    v = jnp.zeros_like(b["video"])
    _, inter_eval = self.model.encode_items(b, v)
    _, inter_train = self.model.encode_items(b, v, train=True,
                                             key=jax.random.PRNGKey(0))
    changed = np.any(np.abs(inter_eval["item"] - inter_train["item"]) > 0, axis=1)
    self.assertTrue(0 < changed.sum() < len(changed))  # about id_dropout of them

  def test_forward_outputs(self):
    b = fixtures.fake_batch(self.config)
    out, inter = self.model(b, train=True, key=jax.random.PRNGKey(1))
    self.assertEqual(set(out), {"click", "watch_time", "position_logit"})
    self.assertEqual(out["click"].shape, b["user"].shape)  # (clips, impressions per clip)
    self.assertTrue(np.all(np.asarray(out["watch_time"]) >= 0))
    self.assertIn("frame_features", inter)


if __name__ == "__main__":
  absltest.main()
