"""Sweeps and reports: search-space parsing against the registered parts, a 3-trial study on the
smoke config (one complete, one pruned, one failed on a NaN loss), resume after `kill -9`
mid-trial, and the report page built from a study and its runs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from unittest import mock

import jax.numpy as jnp
import ml_collections
import numpy as np
import optuna
from absl.testing import absltest
from absl.testing import parameterized

from tests import helpers
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.data import flow_cache
from vidrec_jax.models import poolings
from vidrec_jax.train import context as context_lib
from vidrec_jax.train import workdir as workdir_lib
from vidrec_jax.tuning import space
from vidrec_jax.tuning import study as study_lib

CONFIG = os.path.join(helpers.REPO, "configs", "demo.py")


class SpaceTest(parameterized.TestCase):

  def test_parses_every_kind(self):
    c = helpers.load_config("smoke")
    params = space.parse(c, (
        "train.learning_rate=loguniform(1e-3, 1e-2)", "model.id_dropout=uniform(0, 0.5)",
        "train.warmup_steps=int(0, 4, step=2)", "model.pooling=choice(mean_max, masked_max)",
        "model.frame_encoder.channels=choice((4, 6), (8, 8))"))
    by = {p.field: p for p in params}
    self.assertEqual(by["train.learning_rate"].kind, "loguniform")
    self.assertTrue(by["train.learning_rate"].log)
    self.assertEqual((by["train.warmup_steps"].low, by["train.warmup_steps"].high,
                      by["train.warmup_steps"].step), (0, 4, 2))
    self.assertEqual(by["model.pooling"].choices, ("mean_max", "masked_max"))
    self.assertEqual(by["model.frame_encoder.channels"].choices, ((4, 6), (8, 8)))
    # Suggested values land in the config with their field's type.
    trial = optuna.trial.FixedTrial({
        "train.learning_rate": 2e-3, "model.id_dropout": 0.25, "train.warmup_steps": 2,
        "model.pooling": "masked_max", "model.frame_encoder.channels": "(8, 8)"})
    values = space.suggest(trial, params)
    applied = space.apply(c, values)
    self.assertEqual(applied.model.frame_encoder.channels, (8, 8))
    self.assertEqual(applied.model.pooling, "masked_max")
    self.assertEqual(c.model.pooling, "mean_max")  # the base config is untouched
    self.assertEqual(space.grid([by["model.pooling"], by["train.warmup_steps"]]),
                     {"model.pooling": ["mean_max", "masked_max"],
                      "train.warmup_steps": [0, 2, 4]})

  @parameterized.parameters(
      ("model.pooling=choice(mean_max, median)", "registered: attention, masked_max, masked_mean"),
      ("model.user_tower.name=choice(id, transformer)", "registered: din, id, sasrec"),
      ("model.poolin=choice(mean_max)", "model has: backbone"),
      ("train.learning_rate=gauss(0, 1)", "allowed: uniform(...), loguniform(...)"),
      ("train.learning_rate=loguniform(0, 1)", "low > 0"),
      ("train.learning_rate=uniform(1e-2, 1e-3)", "low < high"),
      ("train.warmup_steps=int(0.5, 4)", "integer bounds"),
      ("model.embed_dim=choice(big)", "does not fit"),
      ("data.dataset.seed=choice(1, 2)", "cannot be searched"),
      ("train.steps", "expected FIELD=DISTRIBUTION"),
  )
  def test_bad_space_is_one_line_naming_what_is_allowed(self, spec, expected):
    with self.assertRaises(ConfigError) as e:
      space.parse(helpers.load_config("smoke"), (spec,))
    self.assertIn(expected, str(e.exception))
    self.assertNotIn("\n", str(e.exception))

  def test_grid_needs_finite_parameters(self):
    with self.assertRaisesRegex(ConfigError, "a grid needs choice"):
      space.grid(space.parse(helpers.load_config("smoke"),
                             ("train.learning_rate=uniform(1e-3, 1e-2)",)))

  def test_command_line_bad_space_is_one_error_line_and_exit_2(self):
    workdir = os.path.join(tempfile.mkdtemp(), "sweep")
    r = run_sweep(f"--config={CONFIG}:smoke", f"--workdir={workdir}", "--trials=1",
                  '--config.sweep.space=("model.pooling=choice(mean_max, nope)",)')
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(err, 1, r.stderr[-2000:])
    self.assertIn("'nope'", err[0])
    self.assertIn("registered: attention, masked_max, masked_mean, mean_max, pyramid", err[0])
    self.assertFalse(os.path.exists(workdir))


  def test_main_mode_sweep_checks_the_space_too(self):
    workdir = os.path.join(tempfile.mkdtemp(), "sweep")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    r = subprocess.run([sys.executable, "-m", "vidrec_jax.main", f"--config={CONFIG}:smoke",
                        f"--workdir={workdir}", "--mode=sweep",
                        '--config.sweep.space=("train.learning_rate=uniform(1e-2, 1e-3)",)'],
                       capture_output=True, text=True, env=env, cwd=helpers.REPO, timeout=300,
                       check=False)
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(err, 1, r.stderr[-2000:])
    self.assertIn("low < high", err[0])


class NanPooling(poolings.Pooling):
  """A registered part whose output is NaN: the trial that picks it must fail, not the study."""

  def __call__(self, x, mask):
    return poolings.masked_mean(x, mask) * jnp.nan


class PruneMaskedMean(optuna.pruners.BasePruner):
  """Prunes the trial that picked masked_mean at its first report (a deterministic pruner)."""

  def prune(self, study, trial):
    return trial.params.get("model.pooling") == "masked_mean"


def smoke_sweep_config(pruner: str = "none") -> ml_collections.ConfigDict:
  c = helpers.load_config("smoke")
  c.data.data_dir = helpers.smoke_world_dir()
  c.sweep.update(sampler="grid", pruner=pruner, trials=4,
                 space=("model.pooling=choice(mean_max, masked_max, masked_mean, test_nan)",))
  return c


class StudyTest(absltest.TestCase):
  """One 4-trial study (grid over four poolings), shared by the study and report checks."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    poolings.POOLINGS.register("test_nan", NanPooling)
    study_lib.PRUNERS.register("test_prune_masked_mean", lambda s: PruneMaskedMean())
    cls.root = tempfile.mkdtemp()
    cls.config = smoke_sweep_config("test_prune_masked_mean")
    cls.sweep = study_lib.Sweep(cls.config, cls.root, f"{CONFIG}:smoke",
                                {"data.data_dir": cls.config.data.data_dir})
    cls.counts = cls.sweep.run(4, progress=False)
    with open(os.path.join(cls.root, "trials.json")) as f:
      cls.trials = json.load(f)

  @classmethod
  def tearDownClass(cls):
    poolings.POOLINGS.unregister("test_nan")
    study_lib.PRUNERS.unregister("test_prune_masked_mean")
    super().tearDownClass()

  def by_pooling(self, name):
    return next(t for t in self.trials["trials"] if t["params"]["model.pooling"] == name)

  def test_two_complete_one_pruned_one_failed(self):
    self.assertEqual((self.counts["complete"], self.counts["pruned"], self.counts["failed"]),
                     (2, 1, 1))
    good, pruned, nan = (self.by_pooling(n) for n in ("mean_max", "masked_mean", "test_nan"))
    self.assertEqual(self.by_pooling("masked_max")["state"], "COMPLETE")
    self.assertEqual(good["state"], "COMPLETE")
    self.assertBetween(good["value"], 0.0, 1.0)
    self.assertIsNotNone(good["test"])
    with open(os.path.join(good["workdir"], "eval", "metrics.json")) as f:
      self.assertAlmostEqual(json.load(f)["valid/cold/auc"], good["value"], places=6)
    self.assertEqual(pruned["state"], "PRUNED")
    self.assertEqual(list(pruned["intermediate"]), ["2"])  # stopped at its first evaluation
    self.assertEqual(nan["state"], "FAIL")
    self.assertIn("NonFiniteLossError", nan["error"])
    self.assertIn("loss is nan", nan["error"])

  def test_best_config_is_a_runnable_config_file(self):
    path = os.path.join(self.root, "best_config.py")
    best = space.load_config_file(path)
    complete = [t for t in self.trials["trials"] if t["state"] == "COMPLETE"]
    winner = max(complete, key=lambda t: t["value"])
    self.assertEqual(best.model.pooling, winner["params"]["model.pooling"])
    self.assertEqual(best.train.steps, 6)
    trial = space.load_config_file(path, "trial")
    self.assertEqual((trial.train.steps, trial.train.eval_every), (6, 2))
    with self.assertRaisesRegex(ValueError, "allowed: trial"):
      space.load_config_file(path, "bogus")

  def test_rerun_adds_no_trial_and_a_changed_space_is_refused(self):
    counts = study_lib.Sweep(self.config, self.root).run(4, progress=False)
    self.assertEqual(counts["done"], 4)
    other = smoke_sweep_config("test_prune_masked_mean")
    other.sweep.space = ("model.pooling=choice(mean_max, masked_max)",)
    with self.assertRaisesRegex(ValueError, "sweep.space"):
      study_lib.Sweep(other, self.root).run(5, progress=False)

  def test_report_has_every_plot_and_table(self):
    from vidrec_jax.reporting import page  # pylint: disable=g-import-not-at-top
    out = tempfile.mkdtemp()
    good = self.by_pooling("mean_max")["workdir"]
    pruned = self.by_pooling("masked_mean")["workdir"]
    path = page.build([self.root, good, pruned], out)
    with open(path) as f:
      text = f.read()
    with open(os.path.join(out, "plots.json")) as f:
      plots = json.load(f)
    study = os.path.basename(self.root)
    for key in ("training", "valid", f"{study}/history", f"{study}/intermediate",
                f"{study}/importances", f"{study}/parallel"):
      self.assertIsNotNone(plots[key], key)
      with open(os.path.join(out, plots[key]), "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
      self.assertIn(f'src="{plots[key]}"', text)
    self.assertIn("test/cold/auc", text)  # the final metric table
    self.assertIn("NonFiniteLossError", text)  # the trial table shows the failure
    for tag in ("loss/click", "loss/watch_time", "valid/cold/auc"):
      self.assertTrue(any(tag in k for k in page.training_tags(page.load([good])[0])
                          + page.valid_tags(page.load([good])[0])), tag)

  def test_report_renders_in_headless_chromium(self):
    """The page as a person sees it: Chromium loads it with its plots (optional: needs Debian's
    `chromium`)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
      self.skipTest("headless Chromium is not installed (Debian: apt-get install chromium)")
    from vidrec_jax.reporting import page  # pylint: disable=g-import-not-at-top
    import matplotlib.image  # pylint: disable=g-import-not-at-top
    out = tempfile.mkdtemp()
    path = page.build([self.root, self.by_pooling("mean_max")["workdir"]], out)
    shot = os.path.join(out, "screenshot.png")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,1600", f"--screenshot={shot}", f"file://{path}"],
                   capture_output=True, timeout=120, check=False)
    self.assertTrue(os.path.exists(shot), "chromium wrote no screenshot")
    pixels = matplotlib.image.imread(shot)[..., :3]
    self.assertEqual(pixels.shape[:2], (1600, 1280))
    # Plots rendered (not a page of broken-image icons): a good part of the view is not white,
    # in the hundreds of colours of antialiased plots.
    self.assertGreater((pixels.min(-1) < 0.95).mean(), 0.1)
    colours = np.unique((pixels * 255).astype(np.int32).reshape(-1, 3), axis=0)
    self.assertGreater(len(colours), 300)

  def test_report_of_a_non_workdir_is_one_error(self):
    r = subprocess.run([sys.executable, "-m", "vidrec_jax.report", tempfile.mkdtemp(),
                        f"--out={tempfile.mkdtemp()}"], capture_output=True, text=True,
                       cwd=helpers.REPO, timeout=300, check=False)
    self.assertEqual(r.returncode, 2, r.stderr[-2000:])
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(err, 1)
    self.assertIn("not a run workdir", err[0])


class SharedCachesTest(absltest.TestCase):

  def test_trials_share_the_flow_cache_written_once(self):
    """A model that reads the optical-flow cache: the sweep writes it once in its workdir, as a
    run's context does, and a trial's preparation finds it there instead of writing its own."""
    c = helpers.load_config("smoke,flow", "encoder_ablation.py")
    c.model.frame_encoder.flow_source = "cache"
    c.data.data_dir = helpers.smoke_world_dir()
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    with mock.patch.object(flow_cache, "write_shard", wraps=flow_cache.write_shard) as write:
      shared = study_lib.Sweep(c, root)._shared()
      self.assertEqual(shared, {"data.data_dir": c.data.data_dir,
                                "data.flow_cache": os.path.join(root, "flow")})
      trial = space.apply(c, {**space.trial_settings(c.sweep), **shared})
      trial_root = os.path.join(root, "trials", "0000")
      context_lib.prepare_data(trial, workdir_lib.Workdir.of(trial, trial_root))
    self.assertEqual(write.call_count, 1)  # one process: one shard, written once
    self.assertFalse(os.path.exists(os.path.join(trial_root, "flow")))


class EventsTest(absltest.TestCase):

  def test_scalars_round_trip_and_a_cut_file_keeps_what_is_whole(self):
    import tensorboardX  # pylint: disable=g-import-not-at-top
    from vidrec_jax.reporting import events  # pylint: disable=g-import-not-at-top
    workdir = tempfile.mkdtemp()
    writer = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
    for step in (1, 2, 3):
      writer.add_scalar("loss", 1.0 / step, step)
      writer.add_scalar("valid/all/auc", 0.5 + step / 10, step)
    writer.add_scalar("loss", 0.25, 3)  # a resumed run writes step 3 again: the later wins
    writer.close()
    scalars = events.read_scalars(workdir)
    self.assertEqual([s for s, _ in scalars["loss"]], [1, 2, 3])
    self.assertAlmostEqual(scalars["loss"][-1][1], 0.25)
    self.assertAlmostEqual(scalars["valid/all/auc"][1][1], 0.7, places=6)
    path = os.path.join(workdir, "tensorboard", os.listdir(os.path.join(workdir,
                                                                         "tensorboard"))[0])
    with open(path, "rb+") as f:  # a kill mid-write: the last record cut short
      f.truncate(os.path.getsize(path) - 5)
    cut = events.read_scalars(workdir)
    self.assertEqual(cut["valid/all/auc"], scalars["valid/all/auc"])
    self.assertEqual([s for s, _ in cut["loss"]], [1, 2, 3])
    self.assertAlmostEqual(cut["loss"][-1][1], 1 / 3, places=6)  # the rewrite was cut off


class StudyPlotTest(absltest.TestCase):

  def test_a_plot_that_cannot_be_drawn_says_why(self):
    from vidrec_jax.reporting import page  # pylint: disable=g-import-not-at-top
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        value=0.7))
    s = page.Study("s", "", study, {})
    self.assertEqual(page._study_plot(tempfile.mkdtemp(), s, "importances"),
                     (None, "needs 2 complete trials (1 so far)"))
    name, note = page._study_plot(out := tempfile.mkdtemp(), s, "history")
    self.assertEqual(note, "")
    self.assertTrue(os.path.exists(os.path.join(out, name)))


def run_sweep(*args, log=None):
  """The sweep command; with `log` (an open file) it runs in the background, logging there."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  cmd = [sys.executable, "-m", "vidrec_jax.sweep", "--noprogress", *args]
  if log is not None:
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=helpers.REPO, start_new_session=True)
  return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=helpers.REPO,
                        timeout=600, check=False)


class KillResumeTest(absltest.TestCase):

  def test_two_processes_share_one_journal_study(self):
    """Two sweeps on one journal file (as two hosts on a shared disk) split the trials."""
    root = os.path.join(tempfile.mkdtemp(), "sweep")
    args = [f"--config={CONFIG}:smoke", f"--workdir={root}", "--trials=3", "--storage=journal",
            f"--config.data.data_dir={helpers.smoke_world_dir()}",
            "--config.sweep.sampler=random", "--config.sweep.pruner=none",
            '--config.sweep.trial=("train.steps=4", "train.eval_every=0")',
            '--config.sweep.space=("train.learning_rate=loguniform(1e-3, 1e-2)",)']
    logs = [tempfile.TemporaryFile(mode="w+") for _ in range(2)]
    procs = [run_sweep(*args, log=log) for log in logs]
    for proc, log in zip(procs, logs):
      self.assertEqual(proc.wait(timeout=600), 0, log.seek(0) or log.read()[-3000:])
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        os.path.join(root, "study.journal")))
    trials = optuna.load_study(study_name="sweep", storage=storage).trials
    # Each host starts a trial while fewer than 3 are finished or running elsewhere, so the
    # two may overshoot by one between them; no trial number or workdir is shared.
    self.assertBetween(len(trials), 3, 4)
    self.assertTrue(all(t.state == optuna.trial.TrialState.COMPLETE for t in trials))
    self.assertLen({t.user_attrs["workdir"] for t in trials}, len(trials))
    self.assertLen({t.user_attrs["pid"] for t in trials}, 2)  # both processes ran trials

  def test_kill_9_mid_trial_then_resume(self):
    root = os.path.join(tempfile.mkdtemp(), "sweep")
    args = [f"--config={CONFIG}:smoke", f"--workdir={root}", "--trials=2",
            f"--config.data.data_dir={helpers.smoke_world_dir()}",
            "--config.sweep.sampler=random", "--config.sweep.pruner=none",
            "--config.train.checkpoint_every=10",
            '--config.sweep.trial=("train.steps=300", "train.eval_every=0")',
            '--config.sweep.space=("train.learning_rate=loguniform(1e-3, 1e-2)",)']
    log = tempfile.TemporaryFile(mode="w+")
    proc = run_sweep(*args, log=log)
    second = os.path.join(root, "trials", "0001", "checkpoints")
    deadline = time.time() + 400
    try:
      # Kill once trial 1 has saved a checkpoint, so that its re-run has one to resume from.
      while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(second) and any(n.isdigit() for n in os.listdir(second)):
          break
        time.sleep(0.2)
      log.seek(0)
      self.assertIsNone(proc.poll(), "the sweep ended before it could be killed: "
                        + log.read()[-2000:])
      os.killpg(proc.pid, signal.SIGKILL)
    finally:
      proc.wait()
      log.close()
    first_metrics = os.path.join(root, "trials", "0000", "eval", "metrics.json")
    self.assertTrue(os.path.exists(first_metrics))
    mtime = os.path.getmtime(first_metrics)
    r = run_sweep(*args)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(root, "trials.json")) as f:
      trials = json.load(f)
    states = {t["number"]: t for t in trials["trials"]}
    self.assertEqual(states[0]["state"], "COMPLETE")
    self.assertEqual(os.path.getmtime(first_metrics), mtime)  # trial 0 was not re-run
    self.assertEqual(states[1]["state"], "FAIL")
    self.assertIn("interrupted", states[1]["error"])
    self.assertEqual(states[2]["retry_of"], 1)
    self.assertEqual(states[2]["state"], "COMPLETE")
    self.assertEqual(states[2]["params"], states[1]["params"])
    self.assertEqual(states[2]["workdir"], states[1]["workdir"])
    self.assertLen(states, 3)
    self.assertEqual((trials["counts"]["complete"], trials["counts"]["retried"]), (2, 1))
    self.assertIn("restored checkpoint at step", r.stderr)  # the re-run resumed
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  absltest.main()
