"""The config of record: written at start; a resume that changes training is refused in one line
naming the fields; steps, cadence, mesh and loader settings may change."""

import json
import os
import tempfile

from absl.testing import absltest

from tests import helpers
from tests.main_test import CONFIG
from tests.main_test import run_main
from vidrec_jax import config_io
from vidrec_jax import experiment
from vidrec_jax.models import poolings
from vidrec_jax.models import recommender


class ConfigOfRecordTest(absltest.TestCase):

  def test_changed_fields(self):
    saved = config_io.resolved(helpers.load_config())
    c = helpers.load_config()
    c.train.update(steps=99, log_every=7, checkpoint_every=5, eval_every=3)
    c.mesh.shape.fsdp = 2
    c.data.update(num_workers=5, eval_batch_size=8)
    c.evals.ranking.ndcg_k = 5
    c.mode = "eval"
    self.assertEqual(config_io.changed_fields(saved, c), [])
    c.train.learning_rate = 0.1
    c.model.embed_dim = 16
    c.data.dataset.seed = 3
    self.assertEqual(config_io.changed_fields(saved, c), [
        "data.dataset.seed: 17 -> 3", "model.embed_dim: 8 -> 16",
        "train.learning_rate: 0.003 -> 0.1"])

  def test_fields_added_later_pass_at_their_signature_defaults_only(self):
    # a record written before these fields existed: absent is no change while each is at its
    # part's signature default; the flow stream's settings do nothing while it is off
    c = helpers.load_config("basic", "multitask.py")
    terms = recommender.record_terms(c)
    saved = config_io.resolved(c)
    fe = saved["model"]["frame_encoder"]
    for f in ("flow", "flow_channels", "flow_size", "flow_source", "flow_stream",
              "input_dropout", "frame_average"):
      del fe[f]
    for f in ("item_duration", "shared_affinity", "given_click"):
      del saved["model"][f]
    del saved["model"]["backbone"]["whiten"]
    self.assertEqual(config_io.changed_fields(saved, c, terms), [])
    c.model.frame_encoder.input_dropout = 0.5
    c.model.shared_affinity = True
    self.assertEqual(config_io.changed_fields(saved, c, terms), [
        "model.frame_encoder.input_dropout: '(absent)' -> 0.5",
        "model.shared_affinity: '(absent)' -> True"])
    c = helpers.load_config("basic,hof", "multitask.py")
    self.assertEqual(  # flow_channels and flow_source are at their defaults
        [d.split(":")[0] for d in config_io.changed_fields(saved, c, recommender.record_terms(c))],
        ["model.frame_encoder.flow", "model.frame_encoder.flow_size",
         "model.frame_encoder.flow_stream"])
    # a recorded value is compared as always
    fe["input_dropout"] = 0.3
    c = helpers.load_config("basic", "multitask.py")
    self.assertIn("model.frame_encoder.input_dropout: 0.3 -> 0.0",
                  config_io.changed_fields(saved, c, terms))

  def test_a_record_without_frame_selection_ran_spread_frames(self):
    # data.frame_selection was added after workdirs were recorded: such a workdir resumes
    # with the spread frames it was trained on, and refuses MicroLens' middle frames.
    c = helpers.load_config("frozen", "microlens.py")
    c.data.dataset.path = "/a/folder"
    saved = config_io.resolved(c)
    del saved["data"]["frame_selection"]
    self.assertEqual(config_io.changed_fields(saved, c), [])
    c.data.frame_selection = "middle"
    self.assertEqual(config_io.changed_fields(saved, c),
                     ["data.frame_selection: '(absent)' -> 'middle'"])

  def test_the_record_fills_in_defaults_and_skips_inert_fields(self):
    c = helpers.load_config("basic", "multitask.py")
    terms = recommender.record_terms(c)
    record = config_io.resolved(c, terms)
    self.assertEqual(record["model"]["backbone"]["whiten_flow"], False)
    self.assertIn("kernel_init", config_io.resolved(
        helpers.load_config("sasrec", "movielens.py"),
        recommender.record_terms(helpers.load_config("sasrec", "movielens.py")))["model"][
            "user_tower"])
    self.assertNotIn("watch_time_log", c.model.heads)
    # the weight of a head that is not trained does nothing: present, absent or changed
    self.assertEqual(sorted(record["train"]["loss_weights"]), sorted(c.model.heads + c.model.tasks))
    record["train"]["loss_weights"]["watch_time_log"] = 0.5
    c.train.loss_weights.watch_time_logistic = 7.0
    self.assertEqual(config_io.changed_fields(record, c, terms), [])
    c.train.loss_weights.click = 2.0
    self.assertEqual(config_io.changed_fields(record, c, terms),
                     ["train.loss_weights.click: 1.0 -> 2.0"])
    # a switched-off flow stream's settings do nothing; switched on, they count
    c = helpers.load_config("basic", "multitask.py")
    self.assertNotIn("flow_size", record["model"]["frame_encoder"])
    c.model.frame_encoder.flow_size = 8
    self.assertEqual(config_io.changed_fields(record, c, terms), [])
    c.model.frame_encoder.flow = True
    self.assertEqual([d.split(":")[0] for d in config_io.changed_fields(
        record, c, recommender.record_terms(c))],
        ["model.frame_encoder.flow", "model.frame_encoder.flow_size"])

  def test_an_optional_argument_added_to_a_part_resumes_an_older_workdir(self):
    # a toy pooling trains a workdir; then it gains an optional argument, as a library part
    # would in a later version: the old workdir resumes at its default, and only there
    registry = poolings.POOLINGS

    class Mean(poolings.Pooling):
      def __call__(self, x, mask):
        return poolings.masked_mean(x, mask)

    class ScaledMean(Mean):
      def __init__(self, features, *, scale: float = 1.0, dtype, param_dtype, rngs):
        super().__init__(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.scale = scale

      def __call__(self, x, mask):
        return self.scale * poolings.masked_mean(x, mask)

    registry.register("toy_mean", Mean)
    self.addCleanup(lambda: registry.unregister("toy_mean"))
    workdir = tempfile.mkdtemp()

    def config(steps, **args):
      c = helpers.load_config()
      c.data.data_dir = helpers.smoke_world_dir()
      c.train.update(steps=steps, checkpoint_every=2, log_every=2)
      c.model.update(pooling="toy_mean", pooling_args=args)
      return c
    experiment.train(config(2), workdir)
    with open(os.path.join(workdir, config_io.CONFIG_JSON)) as f:
      self.assertEqual(json.load(f)["model"]["pooling_args"], {})
    registry.unregister("toy_mean")
    registry.register("toy_mean", ScaledMean)
    with self.assertRaisesRegex(config_io.ConfigChangedError,
                                r"model.pooling_args.scale: '\(absent\)' -> 2.0"):
      experiment.train(config(4, scale=2.0), workdir)
    experiment.train(config(4), workdir)  # the new argument at its default: resumes
    with open(os.path.join(workdir, config_io.CONFIG_JSON)) as f:
      self.assertEqual(json.load(f)["model"]["pooling_args"], {"scale": 1.0})
    self.assertIn("4", os.listdir(os.path.join(workdir, "checkpoints")))

  def test_rl_policies_and_seeds_may_change(self):
    # each (seed, policy) trains in its own folder: adding one to a workdir reuses the others
    saved = config_io.resolved(helpers.load_config("smoke", "rl.py"))
    c = helpers.load_config("smoke", "rl.py")
    c.rl.update(policies=("greedy", "reinforce_topk"), seeds=(0, 1, 2))
    self.assertEqual(config_io.changed_fields(saved, c), [])
    k = saved["rl"]["topk_k"]
    c.rl.topk_k = k + 2
    self.assertEqual(config_io.changed_fields(saved, c), [f"rl.topk_k: {k} -> {k + 2}"])

  def test_resume_with_a_changed_training_config_is_refused(self):
    workdir = tempfile.mkdtemp()
    common = [f"--config={CONFIG}:smoke", f"--workdir={workdir}",
              f"--config.data.data_dir={helpers.smoke_world_dir()}", "--config.train.steps=2"]
    r = run_main(*common)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(workdir, config_io.CONFIG_JSON)) as f:
      recorded = json.load(f)
    self.assertEqual(recorded["train"]["steps"], 2)
    self.assertEqual(recorded["model"]["frame_encoder"]["channels"], [4, 6])

    r = run_main(*common, "--config.train.learning_rate=0.1", "--config.model.hidden=20")
    self.assertEqual(r.returncode, 1, r.stderr[-3000:])
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(err, 1)
    self.assertIn("model.hidden: 12 -> 20", err[0])
    self.assertIn("train.learning_rate: 0.003 -> 0.1", err[0])
    self.assertNotIn("restored checkpoint", r.stderr)

    r = run_main(*common[:-1], "--config.train.steps=3", "--config.data.num_workers=2")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("restored checkpoint at step 2", r.stderr)
    with open(os.path.join(workdir, config_io.CONFIG_JSON)) as f:
      self.assertEqual(json.load(f)["train"]["steps"], 3)  # the record follows the run


if __name__ == "__main__":
  absltest.main()
