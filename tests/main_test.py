"""The real entry point, in subprocesses: bad config, train -> checkpoint -> resume -> eval."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from tests import helpers

CONFIG = os.path.join(helpers.REPO, "configs", "demo.py")


def run_main(*args, env_extra=None):
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env.update(env_extra or {})
  return subprocess.run([sys.executable, "-m", "vidrec_jax.main", *args], capture_output=True,
                        text=True, env=env, cwd=helpers.REPO, timeout=600, check=False)


class BadConfigTest(parameterized.TestCase):

  @parameterized.parameters(
      ("--config.train.steps=-3", "train.steps"),
      ("--config.model.pooling=median", "model.pooling"),
      ("--config.data.dataset.cold_fraction=1.5", "data.dataset.cold_fraction"),
      ("--config.mesh.shape.data=0", "mesh.shape"),
      ("--config.train.stepz=3", "stepz"),
  )
  def test_exit_2_naming_the_field_and_nothing_written(self, override, field):
    workdir = os.path.join(tempfile.mkdtemp(), "wd")
    r = run_main(f"--config={CONFIG}:smoke", f"--workdir={workdir}", override)
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(err, 1, r.stderr[-2000:])
    self.assertIn(field, err[0])
    self.assertFalse(os.path.exists(workdir))

  def test_an_unknown_config_variant_is_one_line(self):
    r = run_main(f"--config={CONFIG}:bogus", f"--workdir={tempfile.mkdtemp()}")
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    self.assertEqual(r.stderr.strip().splitlines(), [
        "error: bad flag or config override: --config: ValueError: configs/demo.py: unknown "
        "variant 'bogus'; allowed: two_stream, pretrained, conv, smoke, id_only, text, sasrec, "
        "din"])


  def test_an_override_of_a_missing_field_names_it(self):
    # The demo's dataset section is the synthetic world's: it has no `path` to override.
    r = run_main(f"--config={CONFIG}", f"--workdir={tempfile.mkdtemp()}",
                 "--config.data.dataset.path=/tmp/x")
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    self.assertLen(lines, 1)
    self.assertIn("--config.data.dataset.path: the config has no field 'path' in data.dataset",
                  lines[0])
    self.assertIn("--config.data.dataset.name=microlens", lines[0])

  def test_any_config_switches_to_a_named_dataset(self):
    folder = tempfile.mkdtemp()
    helpers.make_microlens_folder(folder)
    switch = ["--config.data.dataset.name=microlens", f"--config.data.dataset.path={folder}"]
    # MovieLens' config on the MicroLens release: its section becomes MicroLens' arguments at
    # their defaults (MicroLens' filtering), then the overrides apply.
    workdir = tempfile.mkdtemp()
    r = run_main(f"--config={helpers.REPO}/configs/movielens.py:smoke", f"--workdir={workdir}",
                 "--mode=generate", *switch, "--config.data.dataset.keep_last=4")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(workdir, "data", "dataset_stamp.json")) as f:
      args = json.load(f)["args"]
    self.assertEqual(args, {"name": "microlens", "path": folder, "min_interactions": 5,
                            "keep_last": 4})
    # The demo (impressions with click, watch-time and like labels) cannot train on pairs of
    # clicks: after the switch, validation says why in one line.
    r = run_main(f"--config={CONFIG}:smoke", f"--workdir={tempfile.mkdtemp()}", *switch)
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr[-2000:])
    self.assertIn("head 'click' needs label column(s) click that dataset 'microlens'", r.stderr)
    # The switched dataset's own arguments only, each with the type of its default.
    for bad, says in (("--config.data.dataset.cold_fraction=0.1",
                       "dataset 'microlens' has no argument 'cold_fraction'; its arguments: "
                       "keep_last, min_interactions, name, path"),
                      ("--config.data.dataset.keep_last=many",
                       "--config.data.dataset.keep_last=many: expected an integer"),
                      ("--config.data.dataset.name=nosuch", "unknown dataset 'nosuch'")):
      r = run_main(f"--config={CONFIG}:smoke", f"--workdir={tempfile.mkdtemp()}", *switch, bad)
      self.assertEqual(r.returncode, 2, r.stderr[-2000:])
      self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr[-2000:])
      self.assertIn(says, r.stderr)


class EndToEndTest(absltest.TestCase):

  def test_train_checkpoint_resume_eval(self):
    workdir = tempfile.mkdtemp()
    data_dir = helpers.smoke_world_dir()
    common = [f"--workdir={workdir}", f"--config.data.data_dir={data_dir}"]
    r = run_main(f"--config={CONFIG}:smoke", *common)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertEqual(sorted(os.listdir(os.path.join(workdir, "checkpoints"))), ["3", "6"])
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
      m = json.load(f)
    for key in ("test/cold/auc", "test/cold/oracle_gain", "test/warm/auc", "test/all/logloss",
                "test/watch_time/mae", "test/watch_time/mse", "test/all/ndcg@10",
                "valid/cold/auc"):
      self.assertIn(key, m)
    self.assertGreater(m["test/cold/count"], 0)
    self.assertTrue(os.listdir(os.path.join(workdir, "tensorboard")))
    self.assertIn("test/cold", r.stdout)  # the printed table

    # Resume: a longer run starts from the step-6 checkpoint, not from scratch.
    r = run_main(f"--config={CONFIG}:smoke", *common, "--config.train.steps=8")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("restored checkpoint at step 6", r.stderr)
    self.assertIn("8", os.listdir(os.path.join(workdir, "checkpoints")))

    r = run_main(f"--config={CONFIG}:smoke", *common, "--mode=eval")
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    self.assertIn("restored checkpoint at step 8", r.stderr)

  def test_missing_dataset_is_one_line_error(self):
    r = run_main(f"--config={CONFIG}:smoke", f"--workdir={tempfile.mkdtemp()}",
                 "--config.data.data_dir=/nonexistent/world", "--mode=eval")
    self.assertEqual(r.returncode, 1)
    self.assertIn("error: dataset not found: /nonexistent/world", r.stderr)
    self.assertNotIn("Traceback", r.stderr)


if __name__ == "__main__":
  absltest.main()
