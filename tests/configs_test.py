"""Every shipped config file and variant builds and passes validation; unknown variants fail."""

from absl.testing import absltest
from absl.testing import parameterized

from configs import encoder_ablation
from configs import multitask
from tests import helpers
from vidrec_jax import validate
from vidrec_jax.models import encoders
from vidrec_jax.models import heads

CASES = [("demo.py", v) for v in ("", "conv", "smoke", "id_only", "conv,id_only", "text",
                                  "smoke,text", "conv,text", "sasrec", "din",
                                  "smoke,sasrec", "conv,din", "two_stream", "two_stream,text",
                                  "pretrained,sasrec", "pretrained,din")] + [
    ("demo_id_only.py", v) for v in ("", "smoke")] + [
        ("pretrained.py", v) for v in ("", "smoke", "pixels", "top_blocks", "full", "adjacent",
                                       "lite1", "lite2", "smoke,full", "top_blocks,adjacent")] + [
    ("movielens.py", v) for v in ("", "sasrec", "long_context", "sampled", "titles", "smoke",
                                  "smoke,sampled")] + [
    ("video_folder.py", v) for v in ("", "id_only", "titles_only", "smoke", "smoke,id_only")
      ] + [("microlens.py", v) for v in ("", "id", "frozen", "e2e", "tower", "smoke", "smoke,e2e",
                                         "smoke,tower", "frozen,middle",
                                         "smoke,e2e,middle")] + [
    ("rl.py", v) for v in ("", "smoke", "estimated", "smoke,estimated", "seeds=1,steps=10")
        ] + [("encoder_ablation.py", f"{t},{e}") for t in ("appearance", "motion", "order")
             for e in ("rgb", "flow", "attention", "both", "pyramid")] + [
    ("encoder_ablation.py", v) for v in ("", "smoke", "smoke,order,pyramid", "seed=2,batch=8")]


class ConfigsTest(parameterized.TestCase):

  @parameterized.parameters(*CASES)
  def test_config_is_valid(self, name, variant):
    c = helpers.load_config(variant, name)
    if name in ("video_folder.py", "microlens.py"):
      c.data.dataset.path = "/a/folder"  # the one argument without a default
    validate.validate(c)

  def test_frame_selection_is_one_of_the_decoders(self):
    c = helpers.load_config("frozen,middle", "microlens.py")
    c.data.dataset.path = "/a/folder"
    self.assertEqual((c.data.frame_selection, c.data.cache_frames, c.data.num_frames),
                     ("middle", 5, 5))
    c.data.frame_selection = "centre"
    with self.assertRaisesRegex(validate.ConfigError, "data.frame_selection='centre'.*allowed: "
                                "spaced, middle") as cm:
      validate.validate(c)
    self.assertNotIn("\n", str(cm.exception))

  def test_models_and_their_trainers_and_evaluators_must_fit(self):
    c = helpers.load_config("smoke", "movielens.py")
    c.train.trainer = "supervised"
    with self.assertRaisesRegex(validate.ConfigError, "train.trainer='supervised'.*trains the "
                                "models two_tower, not model.name='sequential'"):
      validate.validate(c)
    c = helpers.load_config("smoke", "movielens.py")
    c.model.user_tower = dict(name="din", hidden=8)
    with self.assertRaisesRegex(validate.ConfigError, "model.user_tower.name='din'.*sasrec"):
      validate.validate(c)
    c = helpers.load_config("smoke")
    c.evals.full = dict(type="full_sort", splits=("test",), ks=(10,))
    with self.assertRaisesRegex(validate.ConfigError, "evals.full.type='full_sort'.*sequential"):
      validate.validate(c)

  def test_demo_default_is_the_multitask_model(self):
    # Chosen on valid over fresh worlds 20-22 (issue 27): configs/multitask.py's default, exactly.
    c = helpers.load_config("", "demo.py")
    self.assertEqual(c.to_dict(), multitask.get_config("").to_dict())
    self.assertEqual((c.model.frame_encoder.name, c.model.backbone.whiten, c.model.trunk.name,
                      c.train.steps), ("backbone", 64, "ple", 3000))
    # The typed arguments apply to it; the history towers drop only the two-stage evaluation.
    c = helpers.load_config("steps=50,seed=2,world_seed=20", "demo.py")
    self.assertEqual((c.train.steps, c.seed, c.data.shuffle_seed, c.data.dataset.seed),
                     (50, 2, 2, 20))
    for tower in ("sasrec", "din"):
      c = helpers.load_config(tower, "demo.py")
      self.assertEqual((c.model.user_tower.name, c.model.tasks), (tower, ("user_item",)))
      self.assertNotIn("two_stage", c.evals)
      self.assertEqual(c.model.frame_encoder.name, "backbone")
    self.assertEqual(helpers.load_config("text", "demo.py").model.tasks,
                     ("user_item", "text_match", "visual_query"))

  def test_flow_cache_holds_what_the_item_tower_reads(self):
    # The demo's whitening reads only the flow's motion histograms; a flow stream, the fields.
    forms = {v: encoders.flow_cache_form(helpers.load_config(v, "demo.py").model)
             for v in ("", "pretrained", "two_stream")}
    self.assertEqual(forms, {"": "histograms", "pretrained": None, "two_stream": None})
    forms = {v: encoders.flow_cache_form(multitask.get_config(v).model)
             for v in ("flow", "hof", "flow,white")}
    self.assertEqual(forms, {"flow": "fields", "hof": "fields", "flow,white": "fields"})
    self.assertEqual(encoders.flow_cache_form(
        helpers.load_config("smoke,flow", "encoder_ablation.py").model), None)

  def test_demo_towers(self):
    c = helpers.load_config("two_stream", "demo.py")
    fe = c.model.frame_encoder
    self.assertEqual((fe.name, fe.flow, fe.temporal_attention, c.model.pooling),
                     ("two_stream", True, "causal", "pyramid"))
    self.assertEqual(encoder_ablation.encoder("pyramid")[0].to_dict(), fe.to_dict())
    self.assertEqual((c.model.heads, c.model.tasks, c.train.steps),
                     (("click", "watch_time"), (), 2000))
    c = helpers.load_config("pretrained", "demo.py")
    self.assertEqual(c.model.frame_encoder.name, "backbone")
    self.assertEqual(c.model.backbone.name, "efficientnet_lite0")
    self.assertTrue(c.model.backbone.from_cache)
    self.assertEqual(c.model.backbone.whiten, 0)
    self.assertEqual(helpers.load_config("conv", "demo.py").model.frame_encoder.name, "conv")
    self.assertEqual(helpers.load_config("smoke,id_only", "demo.py").model.frame_encoder.to_dict(),
                     {"name": "none"})

  def test_two_stage_needs_one_vector_per_user(self):
    c = helpers.load_config("sasrec", "demo.py")
    c.evals.two_stage = multitask.get_config("").evals.two_stage
    with self.assertRaisesRegex(validate.ConfigError, "evals.two_stage.type='two_stage'.*one "
                                "vector per user.*'sasrec'"):
      validate.validate(c)

  @parameterized.parameters("demo.py", "pretrained.py", "rl.py", "encoder_ablation.py")
  def test_unknown_variant_names_the_allowed_ones(self, name):
    with self.assertRaisesRegex(ValueError, "allowed: .*smoke"):
      helpers.load_config("smok", name)

  def test_typed_arguments(self):
    c = helpers.load_config("smoke,frames=8,steps=20,lr=0.01,seed=3,workers=1")
    self.assertEqual((c.data.num_frames, c.train.steps, c.seed, c.data.shuffle_seed),
                     (8, 20, 3, 3))
    self.assertEqual((c.train.learning_rate, c.data.num_workers), (0.01, 1))
    self.assertEqual(c.data.dataset.num_videos, 40)  # the variant still applies
    self.assertEqual(helpers.load_config("smoke,steps=9", "pretrained.py").train.steps, 9)
    with self.assertRaisesRegex(ValueError, "unknown argument 'frame'; allowed: batch, frames"):
      helpers.load_config("smoke,frame=8")
    with self.assertRaisesRegex(ValueError, r"frames='eight': expected a int"):
      helpers.load_config("smoke,frames=eight")

  def test_a_part_rejects_arguments_it_does_not_take(self):
    c = helpers.load_config("smoke")
    c.model.frame_encoder.chanels = (4, 6)
    with self.assertRaisesRegex(validate.ConfigError, "model.frame_encoder: unknown argument"
                                r"\(s\) chanels; ConvFrameEncoder.__init__ takes channels, "
                                "features, motion"):
      validate.validate(c)
    c = helpers.load_config("smoke")
    del c.model.frame_encoder["motion"]
    with self.assertRaisesRegex(validate.ConfigError, r"missing argument\(s\) motion"):
      validate.validate(c)

  def test_heads_need_the_datasets_labels_and_evals_their_splits(self):
    c = helpers.load_config("smoke")
    c.evals.ranking.splits = ("valid", "holdout")
    with self.assertRaisesRegex(validate.ConfigError, "evals.ranking.splits.*train, valid, test"):
      validate.validate(c)
    c = helpers.load_config("smoke")
    c.evals.ranking.type = "rankin"
    with self.assertRaisesRegex(validate.ConfigError,
                                "evals.ranking.type.*registered: full_sort, ranking"):
      validate.validate(c)

    class RatingHead(heads.Head):
      labels = ("rating",)
    heads.HEADS.register("rating", RatingHead)
    self.addCleanup(heads.HEADS.unregister, "rating")
    c = helpers.load_config("smoke")
    c.model.heads = ("click", "rating")
    c.train.loss_weights.rating = 1.0
    with self.assertRaisesRegex(validate.ConfigError, "head 'rating' needs label column.s. "
                                "rating that dataset 'synthetic' does not have"):
      validate.validate(c)


if __name__ == "__main__":
  absltest.main()
