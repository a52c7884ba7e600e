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
                 "--config.data.dataset.name=microlens", "--config.data.dataset.path=/tmp/x")
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    self.assertLen(lines, 1)
    self.assertIn("--config.data.dataset.path: the config has no field 'path' in data.dataset",
                  lines[0])
    self.assertIn("configs/microlens.py", lines[0])


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
