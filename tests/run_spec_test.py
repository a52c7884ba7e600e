"""The run's settings resolved once: every config file resolves to frozen, typed objects that
hold exactly its values, a section with a missing or unknown field is one error line, and the
objects below the entry points (context, setup, trainers) carry no ConfigDict."""

import dataclasses
import os
import pickle

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

from absl.testing import absltest  # noqa: E402
from absl.testing import parameterized  # noqa: E402

from tests import helpers  # noqa: E402
from vidrec_jax import run_spec  # noqa: E402
from vidrec_jax.config_checks import ConfigError  # noqa: E402
from vidrec_jax.data import world as world_lib  # noqa: E402
from vidrec_jax.train import context  # noqa: E402

CONFIGS = ("demo.py", "multitask.py", "movielens.py", "rl.py", "pretrained.py",
           "video_folder.py", "encoder_ablation.py", "demo_id_only.py")


class ResolveTest(parameterized.TestCase):

  @parameterized.parameters(*CONFIGS)
  def test_every_config_resolves_to_its_own_values(self, name):
    config = helpers.load_config("smoke" if name != "demo_id_only.py" else "", name)
    run = run_spec.resolve(config)
    self.assertEqual(run.to_dict(), config.to_dict())
    self.assertIsInstance(run.data, run_spec.DataSpec)
    self.assertIsInstance(run.train, run_spec.TrainSpec)
    self.assertEqual(run.data.history.max_len, config.data.history.max_len)
    self.assertEqual(run.model.user_tower.name, config.model.user_tower.name)
    self.assertEqual(run.rl is not None, "rl" in config)

  def test_settings_cannot_be_changed_in_place(self):
    run = run_spec.resolve(helpers.load_config())
    with self.assertRaises(dataclasses.FrozenInstanceError):
      run.train.steps = 5  # pytype: disable=attribute-error
    with self.assertRaises(dataclasses.FrozenInstanceError):
      run.model.embed_dim = 5
    with self.assertRaises(TypeError):
      run.model["embed_dim"] = 5  # pytype: disable=unsupported-operands
    self.assertIsInstance(run.mesh.rules, tuple)  # lists and tuples freeze to tuples

  def test_a_variant_is_a_copy(self):
    run = run_spec.resolve(helpers.load_config("smoke", "rl.py"))
    other = "none" if run.rl.correction != "none" else "standard"
    changed = dataclasses.replace(run, rl=run.rl.replace(correction=other))
    self.assertEqual(changed.rl.correction, other)
    self.assertNotEqual(run.rl.correction, other)
    with self.assertRaisesRegex(ConfigError, "no field"):
      run.rl.replace(corection="topk")

  def test_a_missing_or_unknown_field_is_one_line_naming_it(self):
    config = helpers.load_config()
    raw = config.to_dict()
    del raw["data"]["num_frames"]
    raw["train"]["step"] = 3
    with self.assertRaises(ConfigError) as e:
      run_spec.resolve(raw)
    self.assertNotIn("\n", str(e.exception))
    self.assertIn("config.data: missing field(s) num_frames", str(e.exception))
    del raw["data"]
    raw["datta"] = {}
    with self.assertRaisesRegex(ConfigError, "unknown section.*datta"):
      run_spec.resolve(raw)
    with self.assertRaisesRegex(AttributeError, "no field 'embeddim'"):
      run_spec.resolve(config).model.embeddim  # pylint: disable=expression-not-assigned

  def test_sections_pickle_and_hash(self):
    run = run_spec.resolve(helpers.load_config())
    again = pickle.loads(pickle.dumps(run))
    self.assertEqual(again, run)
    self.assertEqual(hash(again.model), hash(run.model))

  def test_the_world_takes_exactly_its_arguments(self):
    section = helpers.load_config().data.dataset
    w = world_lib.WorldConfig.from_args(section)
    self.assertEqual(w.to_dict(), {k: v for k, v in section.to_dict().items() if k != "name"})
    # A built world's stamp leaves out where it is written, and `exposure_taste` while off: a
    # world built before either existed is the same world.
    self.assertEqual(w.settings(), {k: v for k, v in w.to_dict().items()
                                    if k not in ("layout", "exposure_taste")})
    bad = dict(section.to_dict(), num_user=3)
    with self.assertRaisesRegex(ConfigError, "unknown field.*num_user"):
      world_lib.WorldConfig.from_args(bad)

  def test_context_setup_and_trainers_carry_no_config_dict(self):
    self.assertNotIn("config", [f.name for f in dataclasses.fields(context.Context)])
    config = helpers.load_config("smoke")
    config.data.data_dir = helpers.smoke_world_dir()
    ctx = context.make_context(run_spec.resolve(config), self.create_tempdir().full_path)
    from vidrec_jax.train import trainers  # pylint: disable=g-import-not-at-top
    trainer = trainers.build(ctx)
    for obj in (ctx, ctx.setup, trainer):
      self.assertFalse(hasattr(obj, "config"), type(obj).__name__)
    self.assertIsInstance(trainer.run, run_spec.RunSpec)


if __name__ == "__main__":
  absltest.main()
