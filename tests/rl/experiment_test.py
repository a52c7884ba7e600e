"""The RL experiment end to end at smoke size: `--mode=rl` writes rl.json with every policy's
simulated return and spread, a resumed run continues identically (early stopping included),
the policy trains on a sharded 8-device mesh, the behaviour head learns the logged
propensities, and a bad `rl` section is one error line."""

import os
import subprocess
import sys
import tempfile

import jax
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from tests import helpers
from vidrec_jax import experiment
from vidrec_jax import files
from vidrec_jax import run_spec
from vidrec_jax import validate
from vidrec_jax.reporting import rl as rl_report
from vidrec_jax.rl import experiment as rl_experiment


def _config(arg="smoke", **rl):
  c = helpers.load_config(arg, "rl.py")
  c.rl.update(rl)
  return c


def _metrics(workdir, seed, policy):
  return files.read_json(os.path.join(workdir, f"seed_{seed}", policy, "eval", "metrics.json"))


class ExperimentTest(parameterized.TestCase):

  def test_rl_json_has_every_policy_with_its_spread(self):
    wd = tempfile.mkdtemp()
    c = _config()
    experiment.train(c, wd)  # train.trainer=reinforce runs the RL experiment
    out = files.read_json(os.path.join(wd, "eval", "rl.json"))
    self.assertEqual(out["seeds"], [0, 1])
    for p in ("random", "greedy", "ips_click", "reinforce", "reinforce_offpolicy",
              "reinforce_topk"):
      per_seed = [_metrics(wd, s, p)["test/return"] for s in (0, 1)]
      self.assertAlmostEqual(out[f"return/{p}"], np.mean(per_seed), places=5)
      self.assertAlmostEqual(out[f"return/{p}/std"], np.std(per_seed, ddof=1), places=5)
      self.assertGreater(out[f"return/{p}"], 0.0)
      for est in ("ips", "snips", "ips_softmax", "snips_softmax"):
        self.assertIn(f"{est}/{p}", out)
    self.assertAlmostEqual(out["gain/greedy"], 0.0)
    self.assertTrue(os.path.getsize(os.path.join(wd, "eval", "rl_returns.png")) > 1000)
    self.assertTrue(os.path.exists(os.path.join(wd, "seed_0", "logs_train.npz")))

  def test_a_resumed_run_continues_identically(self):
    kw = dict(seeds=(0,), policies=("reinforce_topk",))
    straight, resumed = tempfile.mkdtemp(), tempfile.mkdtemp()
    c = _config(**kw)
    c.train.update(steps=6, checkpoint_every=3, eval_every=0, early_stopping=0)
    experiment.rl(c, straight)
    c3 = _config(**kw)
    c3.train.update(steps=3, checkpoint_every=3, eval_every=0, early_stopping=0)
    experiment.rl(c3, resumed)
    self.assertTrue(os.path.isdir(os.path.join(resumed, "seed_0", "reinforce_topk",
                                               "checkpoints", "3")))
    experiment.rl(c, resumed)  # train.steps may grow on resume: steps 4-6 from step 3
    a, b = _metrics(straight, 0, "reinforce_topk"), _metrics(resumed, 0, "reinforce_topk")
    for k in ("test/return", "test/ips", "test/snips", "valid/return"):
      self.assertEqual(a[k], b[k], k)

  def test_a_resumed_run_stops_early_where_an_uninterrupted_one_does(self):
    # The early-stopping count travels in the checkpoint, and a checkpoint saved before its
    # step's evaluation (here the last step of a shorter run) is evaluated when resumed.
    def config(steps):
      c = _config(seeds=(0,), policies=("reinforce_topk",))
      c.train.update(steps=steps, eval_every=1, early_stopping=2, checkpoint_every=100)
      return c
    straight, resumed = tempfile.mkdtemp(), tempfile.mkdtemp()
    experiment.rl(config(16), straight)
    experiment.rl(config(5), resumed)
    experiment.rl(config(16), resumed)
    a, b = _metrics(straight, 0, "reinforce_topk"), _metrics(resumed, 0, "reinforce_topk")
    self.assertLess(a["train/last_step"], 16)  # it did stop early
    for k in ("train/last_step", "train/best_step", "test/return", "test/snips"):
      self.assertEqual(a[k], b[k], k)

  @parameterized.parameters(1, 100)
  def test_an_early_stopped_run_is_not_trained_on_by_a_rerun(self, checkpoint_every):
    # checkpoint_every=1: the early stop lands on a step already saved, and replaces it
    c = _config(seeds=(0,), policies=("reinforce_topk",))
    c.train.update(steps=12, eval_every=1, early_stopping=1, checkpoint_every=checkpoint_every)
    wd = tempfile.mkdtemp()
    experiment.rl(c, wd)
    first = _metrics(wd, 0, "reinforce_topk")
    self.assertLess(first["train/last_step"], 12)  # stopped early
    ckpts = os.path.join(wd, "seed_0", "reinforce_topk", "checkpoints")
    saved = sorted(os.listdir(ckpts))
    experiment.rl(c, wd)
    self.assertEqual(sorted(os.listdir(ckpts)), saved)  # nothing trained or saved since
    self.assertEqual(_metrics(wd, 0, "reinforce_topk"), first)

  def test_topk_with_k_1_is_the_standard_correction(self):
    # K (1 - pi)^(K - 1) = 1 at K = 1, so rl.topk_k reaches the loss: the two policies train
    # alike; at the default K (the slate size) they do not.
    def run(topk_k):
      c = _config(seeds=(0,), policies=("reinforce_offpolicy", "reinforce_topk"), topk_k=topk_k)
      c.train.update(steps=4, eval_every=0, early_stopping=0)
      wd = tempfile.mkdtemp()
      experiment.rl(c, wd)
      return (_metrics(wd, 0, "reinforce_offpolicy"), _metrics(wd, 0, "reinforce_topk"))
    standard, topk = run(1)
    self.assertEqual(standard["test/ips"], topk["test/ips"])
    standard, topk = run(0)
    self.assertNotEqual(standard["test/ips"], topk["test/ips"])

  def test_trains_on_a_sharded_mesh(self):
    self.assertEqual(jax.device_count(), 8)
    kw = dict(seeds=(0,), policies=("reinforce_topk",))
    flat, sharded = _config(**kw), _config(**kw)
    sharded.mesh.shape.update(data=2, fsdp=2, model=2)
    wd_flat, wd_sharded = tempfile.mkdtemp(), tempfile.mkdtemp()
    experiment.rl(flat, wd_flat)
    experiment.rl(sharded, wd_sharded)
    a, b = _metrics(wd_flat, 0, "reinforce_topk"), _metrics(wd_sharded, 0, "reinforce_topk")
    self.assertAlmostEqual(a["test/ips"], b["test/ips"], delta=1e-3 * abs(a["test/ips"]))


class BehaviourHeadTest(absltest.TestCase):

  def test_the_estimated_behaviour_tracks_the_logged_propensities(self):
    from vidrec_jax.rl import simulator as sim_lib  # pylint: disable=g-import-not-at-top
    from vidrec_jax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
    from vidrec_jax.train.state import Setup  # pylint: disable=g-import-not-at-top
    from vidrec_jax.rl import trainer as reinforce  # pylint: disable=g-import-not-at-top
    from vidrec_jax.data import world as world_lib  # pylint: disable=g-import-not-at-top
    from vidrec_jax.data.datasets import synthetic  # pylint: disable=g-import-not-at-top
    from vidrec_jax.rl import logs as logs_lib  # pylint: disable=g-import-not-at-top
    c = _config("smoke,estimated", seeds=(0,))
    c.rl.log_sessions = 6
    c.train.update(steps=300, learning_rate=1e-2)
    c.mesh.shape.update(data=1)
    sim = sim_lib.Simulator(world_lib.World(synthetic.world_args(c.data.dataset)),
                            sim_lib.SimArgs.from_config(c.rl.simulator))
    logs = logs_lib.collect(sim, logs_lib.behaviour_policy(sim, 1.0), sim.initial_histories,
                            6, 0.9, jax.random.PRNGKey(0))
    setup = Setup(run_spec.resolve(c), 1, sim.num_videos,
                  mesh_lib.make_mesh(c.mesh, jax.devices()[:1]))
    trainer = reinforce.ReinforceTrainer(reinforce.RLContext(
        run_spec.resolve(c), setup, logs, rl_experiment.catalog_arrays(sim, logs)))
    state, step = setup.init(0), trainer.step_fn()
    batches = trainer.batches(0, None)
    first = None
    for _ in range(c.train.steps):
      state, m = step(state, next(batches))
      first = first if first is not None else float(m["loss/behaviour"])
    self.assertLess(float(m["loss/behaviour"]), first - 0.3)
    b = reinforce.batch_of(logs, np.arange(len(logs)), "clicked")
    model = setup.model(state.params)
    _, states = model.logits(b, trainer.catalog)
    est = jax.nn.softmax(model.behaviour_logits(states, trainer.catalog), -1)
    est = np.take_along_axis(np.asarray(est), b["slate"], 1).ravel()
    corr = np.corrcoef(np.log(est), np.log(logs.beta.ravel()))[0, 1]
    self.assertGreater(corr, 0.4)


class PolicyModelTest(absltest.TestCase):

  def test_cold_videos_get_logits_from_content_and_slates_never_repeat(self):
    from vidrec_jax.data import world as world_lib  # pylint: disable=g-import-not-at-top
    from vidrec_jax.data.datasets import synthetic  # pylint: disable=g-import-not-at-top
    from vidrec_jax.rl import evaluation  # pylint: disable=g-import-not-at-top
    from vidrec_jax.rl import logs as logs_lib  # pylint: disable=g-import-not-at-top
    from vidrec_jax.rl import simulator as sim_lib  # pylint: disable=g-import-not-at-top
    from vidrec_jax.train import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
    from vidrec_jax.train.state import Setup  # pylint: disable=g-import-not-at-top
    c = _config()
    sim = sim_lib.Simulator(world_lib.World(synthetic.world_args(c.data.dataset)),
                            sim_lib.SimArgs.from_config(c.rl.simulator))
    logs = logs_lib.collect(sim, logs_lib.behaviour_policy(sim, 1.0), sim.initial_histories,
                            2, 0.9, jax.random.PRNGKey(0))
    catalog = rl_experiment.catalog_arrays(sim, logs)
    n = sim.num_videos
    self.assertTrue((catalog["row"][sim.cold] == n).all())  # cold: the OOV row
    setup = Setup(run_spec.resolve(c), 1, n, mesh_lib.make_mesh(c.mesh, jax.devices()[:1]))
    params = setup.init(0).params
    hist = jax.numpy.asarray(logs.final_histories[:4], jax.numpy.int32)
    logits = np.asarray(setup.model(params).logits(
        {"history": hist, "history_mask": (hist >= 0).astype(np.float32)}, catalog)[0])
    cold = np.flatnonzero(sim.cold)
    self.assertTrue(np.isfinite(logits).all())
    self.assertGreater(len(np.unique(np.round(logits[0, cold], 6))), 1)  # content tells apart
    for serving in ("top_k", "sample", "sample_replace"):
      policy = evaluation.model_policy(setup, sim.args.slate_size, serving).policy
      _, out = sim.rollout(policy, sim.reset(np.arange(sim.num_users), logs.final_histories),
                           jax.random.PRNGKey(0), (params, catalog))
      out = jax.device_get(out)
      for b in range(sim.num_users):
        if serving != "sample_replace":  # independent draws may repeat within a slate
          self.assertEqual(len(set(out["slate"][0, b].tolist())), sim.args.slate_size)
        clicked = out["video"][:, b][out["video"][:, b] >= 0]
        self.assertEqual(len(clicked), len(set(clicked.tolist())))


class SummaryTest(absltest.TestCase):

  def test_estimates_are_checked_on_the_pairs_the_seeds_separate(self):
    # a and b swap places between seeds (tied within the spread); c is below both on every
    # seed. IPS gets the tie "wrong" and c right; SNIPS puts c above a.
    returns = {"a": [10.0, 12.0, 11.0], "b": [11.0, 11.5, 10.0], "c": [5.0, 6.0, 7.0]}
    ips = {"a": 4.0, "b": 5.0, "c": 1.0}
    snips = {"a": 9.0, "b": 12.0, "c": 10.0}
    per_seed = {s: {p: {"test/return": returns[p][s], "valid/return": returns[p][s],
                        "test/ips": ips[p],
                        "test/snips": snips[p], "test/ips_softmax": ips[p],
                        "test/snips_softmax": snips[p], "test/clicks": 1.0, "test/steps": 1.0,
                        "test/shown_quality": 0.0, "test/clicked_quality": 0.0}
                    for p in returns} for s in range(3)}
    out = rl_report.summarise(per_seed, ("a", "b", "c"))
    self.assertEqual(rl_report.separated_pairs(returns), [("a", "c"), ("b", "c")])
    self.assertEqual(out["separated_pairs"], 2)
    self.assertFalse(out["same_order/ips"])  # truth: a (11.0) > b (10.83) > c
    self.assertTrue(out["separated_order/ips"])
    self.assertFalse(out["separated_order/snips"])
    self.assertAlmostEqual(out["return/a/std"], 1.0)


class ValidationTest(absltest.TestCase):

  def test_bad_sections_are_named(self):
    for field, value, message in (
        ("correction", "clipped", "config.rl.correction='clipped' is not allowed; registered: "
         "ips_click, none, standard, supervised, topk"),
        ("policies", ("greedy", "ppo"), "config.rl.policies=('greedy', 'ppo') is not allowed; "
         "a tuple of registered RL policies: greedy, ips_click, random, reinforce, "
         "reinforce_offpolicy, reinforce_topk"),
        ("behaviour", "estimated", "needs model.estimate_behaviour=True"),
        ("weight_cap", 0.0, "config.rl.weight_cap=0.0 is not allowed"),
        ("topk_k", -2, "config.rl.topk_k=-2 is not allowed; an integer >= 0")):
      c = _config(**{field: value})
      with self.assertRaisesRegex(validate.ConfigError, message.replace("(", r"\(").replace(
          ")", r"\)")):
        validate.validate(c)
    c = _config()
    c.train.best_metric = "valid/all/auc"
    with self.assertRaisesRegex(validate.ConfigError, "config.train.best_metric='valid/all/auc' "
                                "is not allowed; '' \\(off\\) or a simulated valid metric: "
                                "valid/return"):
      validate.validate(c)
    c = _config()
    c.mode = "eval"
    with self.assertRaisesRegex(validate.ConfigError, "config.mode='eval' is not allowed; the "
                                "RL experiment runs with --mode=rl"):
      validate.validate(c)
    c = _config()
    c.rl.simulator.budget_seconds = 3.0
    with self.assertRaisesRegex(validate.ConfigError, "rl.simulator: unknown argument"):
      validate.validate(c)
    c = _config()
    c.data.dataset.num_palettes = 4
    with self.assertRaisesRegex(validate.ConfigError, "model.content_width=15 is not allowed; "
                                "must be the world's factor width 13"):
      validate.validate(c)

  def test_cli_error_is_one_line(self):
    proc = subprocess.run(
        [sys.executable, "-m", "vidrec_jax.main", "--config=configs/rl.py:smoke",
         "--config.rl.discount=1.5", f"--workdir={tempfile.mkdtemp()}"],
        cwd=helpers.REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertEqual(proc.stderr.strip().splitlines()[-1],
                     "error: config.rl.discount=1.5 is not allowed; must be in [0, 1]")


if __name__ == "__main__":
  absltest.main()
