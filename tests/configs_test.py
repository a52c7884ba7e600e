"""Every shipped config file and variant builds and passes validation; unknown variants fail."""

from absl.testing import absltest
from absl.testing import parameterized

from tests import helpers
from vidrec_jax import validate

CASES = [("demo.py", v) for v in ("", "conv", "smoke", "id_only", "conv,id_only", "text",
                                  "smoke,text", "conv,text")] + [
    ("demo_id_only.py", v) for v in ("", "smoke")] + [
        ("pretrained.py", v) for v in ("", "smoke", "pixels", "top_blocks", "full", "adjacent",
                                       "lite1", "lite2", "smoke,full", "top_blocks,adjacent")]


class ConfigsTest(parameterized.TestCase):

  @parameterized.parameters(*CASES)
  def test_config_is_valid(self, name, variant):
    validate.validate(helpers.load_config(variant, name))

  def test_demo_default_is_the_pretrained_backbone_from_its_cache(self):
    c = helpers.load_config("", "demo.py")
    self.assertEqual(c.model.frame_encoder.name, "backbone")
    self.assertEqual(c.model.backbone.name, "efficientnet_lite0")
    self.assertTrue(c.model.backbone.from_cache)
    self.assertEqual(helpers.load_config("conv", "demo.py").model.frame_encoder.name, "conv")

  @parameterized.parameters("demo.py", "pretrained.py")
  def test_unknown_variant_names_the_allowed_ones(self, name):
    with self.assertRaisesRegex(ValueError, "allowed: .*smoke"):
      helpers.load_config("smok", name)


if __name__ == "__main__":
  absltest.main()
