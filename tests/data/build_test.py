"""A run's dataset is built once and never overwritten (vidrec_jax/data/build.py): a data dir
built with other settings is refused in one line naming them and left byte for byte as it was,
a build killed with SIGKILL leaves nothing at the data dir and the next run builds the same
bytes as an uninterrupted one, and a log dataset whose source files changed is refused too."""

import hashlib
import os
import signal
import subprocess
import sys
import time

from absl.testing import absltest

from tests import helpers
from vidrec_jax.data.datasets import DataError
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.data.datasets import video_folder


def _tree(root: str) -> dict[str, str]:
  """Relative path -> sha256 of every file under `root`."""
  out = {}
  for d, _, names in os.walk(root):
    for n in names:
      path = os.path.join(d, n)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


class BuildOnceTest(absltest.TestCase):

  def test_a_changed_setting_is_refused_and_the_built_world_is_left_as_it_was(self):
    args = helpers.load_config().data.dataset
    data = os.path.join(self.create_tempdir().full_path, "data")
    synthetic.SyntheticWorld().prepare(data, args)
    before = _tree(data)
    self.assertIn("world_config.json", before)
    synthetic.SyntheticWorld().prepare(data, args)  # the same settings: reused
    self.assertEqual(_tree(data), before)
    other = args.to_dict()
    other.update(num_videos=args.num_videos - 10, seed=args.seed + 1)
    with self.assertRaises(DataError) as e:
      synthetic.SyntheticWorld().prepare(data, other)
    message = str(e.exception)
    self.assertNotIn("\n", message)
    self.assertIn(f"data.dataset.num_videos: {args.num_videos} -> {args.num_videos - 10}",
                  message)
    self.assertIn(f"data.dataset.seed: {args.seed} -> {args.seed + 1}", message)
    self.assertIn("never overwritten", message)
    self.assertEqual(_tree(data), before)
    self.assertFalse(os.path.exists(data + ".partial"))

  def test_files_without_a_finished_build_are_refused(self):
    data = self.create_tempdir().full_path
    with open(os.path.join(data, "mine.txt"), "w") as f:
      f.write("not a dataset")
    with self.assertRaisesRegex(DataError, "holds files but no finished dataset"):
      synthetic.SyntheticWorld().prepare(data, helpers.load_config().data.dataset)
    self.assertEqual(os.listdir(data), ["mine.txt"])

  def test_a_kill_mid_build_leaves_nothing_and_the_rebuild_is_identical(self):
    args = helpers.load_config().data.dataset.to_dict()
    args.update(num_videos=300, num_users=60, min_frames=20, max_frames=40)
    root = self.create_tempdir().full_path
    data = os.path.join(root, "data")
    script = ("import sys; from vidrec_jax.data.datasets import synthetic; "
              f"synthetic.SyntheticWorld().prepare(sys.argv[1], {args!r})")
    proc = subprocess.Popen([sys.executable, "-c", script, data], cwd=helpers.REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    videos = os.path.join(data + ".partial", "videos")
    t0 = time.time()
    while not (os.path.isdir(videos) and len(os.listdir(videos)) >= 20):
      self.assertIsNone(proc.poll(), "the build ended before it could be killed")
      self.assertLess(time.time() - t0, 300)
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    self.assertFalse(os.path.exists(data))  # nothing half-written where a run reads
    self.assertTrue(os.path.isdir(data + ".partial"))

    synthetic.SyntheticWorld().prepare(data, args)  # discards the leftover, builds again
    self.assertFalse(os.path.exists(data + ".partial"))
    reference = os.path.join(root, "reference")
    synthetic.SyntheticWorld().prepare(reference, args)
    self.assertEqual(_tree(data), _tree(reference))
    self.assertLen(synthetic.SyntheticWorld().load(data, args).catalog, 300)

  def test_a_log_dataset_whose_source_changed_is_refused(self):
    folder = self.create_tempdir().full_path
    helpers.make_video_folder(folder)
    args = dict(name="video_folder", path=folder, min_interactions=0, keep_last=0)
    source = video_folder.VideoFolder()
    data = os.path.join(self.create_tempdir().full_path, "data")
    source.prepare(data, args)
    before = _tree(data)
    with open(os.path.join(folder, "interactions.csv"), "a") as f:
      f.write("u0,v1,99999\n")
    with self.assertRaisesRegex(DataError, "source files"):
      source.prepare(data, args)
    self.assertEqual(_tree(data), before)


class ForgottenOverrideTest(absltest.TestCase):

  def test_train_without_the_generate_overrides_is_one_error_and_loses_nothing(self):
    # `--mode=generate` with a world size, then `train` in the same workdir without it.
    workdir = self.create_tempdir().full_path
    base = [sys.executable, "-m", "vidrec_jax.main",
            f"--config={os.path.join(helpers.REPO, 'configs', 'demo.py')}:smoke",
            f"--workdir={workdir}"]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    gen = subprocess.run(base + ["--mode=generate", "--config.data.dataset.num_videos=30"],
                         cwd=helpers.REPO, env=env, capture_output=True, text=True, timeout=600)
    self.assertEqual(gen.returncode, 0, gen.stderr[-2000:])
    data = os.path.join(workdir, "data")
    before = _tree(data)
    run = subprocess.run(base + ["--config.train.steps=2"], cwd=helpers.REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    self.assertEqual(run.returncode, 1, run.stderr[-2000:])
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1)
    self.assertIn("data.dataset.num_videos: 30 -> 40", errors[0])
    self.assertEqual(_tree(data), before)
    self.assertFalse(os.path.exists(os.path.join(workdir, "config.json")))


if __name__ == "__main__":
  absltest.main()
