"""The one registry shape: register, look up, an unknown name lists the registered ones."""

from absl.testing import absltest

from vidrec_jax.data import datasets
from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.models.encoders import FRAME_ENCODERS
from vidrec_jax.models.heads import HEADS
from vidrec_jax.models.poolings import POOLINGS
from vidrec_jax.models.tasks import TASKS
from vidrec_jax.models.user_towers import USER_TOWERS
from vidrec_jax.checkpoints.parts import PRETRAINED_PARTS
from vidrec_jax.models.experts import TRUNKS
from vidrec_jax.models.model_registry import MODELS
from vidrec_jax.rl.losses import CORRECTIONS
from vidrec_jax.rl.policies import POLICIES
from vidrec_jax.registry import Registry
from vidrec_jax.registry import UnknownNameError
from vidrec_jax.train.trainers import TRAINERS


class RegistryTest(absltest.TestCase):

  def test_register_get_and_unknown_names(self):
    r = Registry("widget")

    @r.register("b")
    class B:
      pass

    r.register("a", 1)
    self.assertIs(r.get("b"), B)
    self.assertEqual(r.names(), ("a", "b"))
    self.assertIn("a", r)
    with self.assertRaises(UnknownNameError) as cm:
      r.get("c")
    self.assertEqual(str(cm.exception), "unknown widget 'c'; registered: a, b")
    self.assertIsInstance(cm.exception, ValueError)
    with self.assertRaisesRegex(ValueError, "a widget named 'a' is already registered"):
      r.register("a", 2)
    r.register("a", 1)  # the same part again is harmless (a module imported twice)
    r.unregister("a")
    self.assertNotIn("a", r)

  def test_every_kind_of_part_has_its_registry(self):
    expected = {
        datasets.DATASETS: {"synthetic"}, FRAME_ENCODERS: {"conv", "backbone"},
        POOLINGS: {"masked_mean", "masked_max", "mean_max"}, USER_TOWERS: {"id"},
        HEADS: {"click", "watch_time", "like"}, TASKS: {"text_match", "visual_query"},
        EVALUATORS: {"ranking", "retrieval"}, TRAINERS: {"supervised", "reinforce"},
        PRETRAINED_PARTS: {"backbone", "text"}, TRUNKS: {"shared_bottom", "mmoe", "ple"},
        MODELS: {"two_tower", "sequential", "policy"},
        POLICIES: {"random", "greedy", "ips_click"}, CORRECTIONS: {"standard", "topk"}}
    for registry, names in expected.items():
      self.assertIsInstance(registry, Registry)
      self.assertTrue(names <= set(registry.names()), registry.kind)
      with self.assertRaisesRegex(UnknownNameError, f"unknown {registry.kind} 'nope'"):
        registry.get("nope")


if __name__ == "__main__":
  absltest.main()
