"""Adding RL policies from a test file alone, without editing any library file: an untrained
policy (it shows the K most click-appealing videos) and a REINFORCE variant with a weighting
of its own run through the RL experiment's real entry point at smoke size and are reported in
WORKDIR/eval/rl.json beside the library's; a policy in a module outside the library comes in
through `config.imports`; the `reinforce` trainer is found by its config name in rl/."""

import os
import tempfile
import textwrap

import jax
import jax.numpy as jnp
from absl.testing import absltest

from tests import helpers
from vidrec_jax import experiment
from vidrec_jax import files
from vidrec_jax import validate
from vidrec_jax.rl import evaluation as eval_lib
from vidrec_jax.rl import losses
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.policies import POLICIES
from vidrec_jax.rl.policies import Policy
from vidrec_jax.rl.policies.reinforce import ReinforcePolicy


class Clickbait(Policy):
  """Not trained: the K videos of highest click appeal not clicked this session."""

  def served(self, env):
    appeal = jnp.asarray(env.sim.appeal, jnp.float32)
    k = env.slate_size

    def scores(params, history, seen):
      del params, history
      return jnp.where(seen, -jnp.inf, jnp.broadcast_to(appeal, seen.shape))

    def policy(params, state, key):
      del key
      lg = sim_lib.masked_logits(scores(params, state["history"], state["seen"]), state)
      slate = jax.lax.top_k(lg, k)[1]
      return slate, jnp.take_along_axis(jax.nn.softmax(lg, axis=-1), slate, axis=1)

    return eval_lib.Served(policy, scores, "top_k")


TRACED = []  # the toy correction's weight is traced into the trainer's step


def _half_return(pi, beta, ret, cap, k):
  del pi, beta, cap, k
  TRACED.append(True)
  return 0.5 * ret


def _register(registry, name, part, test):
  registry.register(name, part)
  test.addCleanup(registry.unregister, name)


def _config(policies, steps=3):
  c = helpers.load_config("smoke", "rl.py")
  c.rl.update(seeds=(0,), policies=policies)
  c.train.update(steps=steps, eval_every=0, early_stopping=0, checkpoint_every=steps)
  return c


def _results(workdir):
  return files.read_json(os.path.join(workdir, "eval", "rl.json"))


class RLExtensionTest(absltest.TestCase):

  def test_policies_added_from_a_test_run_beside_the_library_ones(self):
    c = _config(("random", "toy_clickbait", "toy_half_reinforce"))
    with self.assertRaisesRegex(validate.ConfigError, "config.rl.policies=.* is not allowed; "
                                "a tuple of registered RL policies: greedy, "):
      validate.validate(c)  # not registered yet
    _register(POLICIES, "toy_clickbait", Clickbait(), self)
    _register(losses.CORRECTIONS, "toy_half", losses.Correction(_half_return), self)
    _register(POLICIES, "toy_half_reinforce", ReinforcePolicy("toy_half"), self)
    validate.validate(c)
    TRACED.clear()
    workdir = tempfile.mkdtemp()
    experiment.train(c, workdir)  # train.trainer=reinforce: the RL experiment
    out = _results(workdir)
    self.assertEqual(out["policies"], ["random", "toy_clickbait", "toy_half_reinforce"])
    for p in out["policies"]:
      for key in ("return", "ips", "snips", "snips_softmax"):
        self.assertIn(f"{key}/{p}", out)
      self.assertGreater(out[f"return/{p}"], 0.0)
    # It shows what its scores say: appeal is anti-correlated with quality (clickbait), so its
    # slates hold far worse videos than random ones.
    self.assertLess(out["shown_quality/toy_clickbait"], out["shown_quality/random"] - 0.5)
    # Not trained: no checkpoints; the REINFORCE variant trained with the toy weighting.
    self.assertFalse(os.path.exists(os.path.join(workdir, "seed_0", "toy_clickbait",
                                                 "checkpoints")))
    self.assertTrue(TRACED)
    self.assertTrue(os.path.isdir(os.path.join(workdir, "seed_0", "toy_half_reinforce",
                                               "checkpoints", "3")))

  def test_a_policy_naming_an_unregistered_correction_is_one_error(self):
    _register(POLICIES, "toy_bad", ReinforcePolicy("toy_missing"), self)
    with self.assertRaisesRegex(validate.ConfigError, "trains with the correction "
                                "'toy_missing', which is not registered"):
      validate.validate(_config(("greedy", "toy_bad")))

  def test_the_reinforce_trainer_is_found_in_rl_by_its_config_name(self):
    from vidrec_jax.train.trainers import TRAINERS  # pylint: disable=g-import-not-at-top
    cls = TRAINERS.get(_config(("greedy",)).train.trainer)
    self.assertEqual(cls.__module__, "vidrec_jax.rl.trainer")
    self.assertTrue(cls.runs_experiment)


# A user's own package: a policy that always shows the first K videos it may.
OUTSIDE_MODULE = textwrap.dedent("""
    import jax
    import jax.numpy as jnp
    from vidrec_jax.rl import evaluation, simulator
    from vidrec_jax.rl.policies import POLICIES, Policy

    class FirstVideos(Policy):
      def served(self, env):
        k, n = env.slate_size, env.sim.num_videos

        def scores(params, history, seen):
          return jnp.where(seen, -jnp.inf, -jnp.arange(n, dtype=jnp.float32)[None])

        def policy(params, state, key):
          lg = simulator.masked_logits(scores(params, state["history"], state["seen"]), state)
          slate = jax.lax.top_k(lg, k)[1]
          return slate, jnp.full(slate.shape, 1.0 / k, jnp.float32)

        return evaluation.Served(policy, scores, "top_k")

    POLICIES.register("toy_first", FirstVideos())
""")


class OutsideTheLibraryTest(absltest.TestCase):

  def test_config_imports_bring_a_policy(self):
    name = "toy_outside_rl_policy"
    helpers.outside_module(self, name, OUTSIDE_MODULE)
    self.addCleanup(POLICIES.unregister, "toy_first")
    c = _config(("toy_first",))
    with self.assertRaisesRegex(validate.ConfigError, "config.rl.policies=\\('toy_first',\\) "
                                "is not allowed"):
      validate.validate(c)
    c.imports = (name,)
    validate.validate(c)  # imports the module, which registers the policy
    workdir = tempfile.mkdtemp()
    experiment.train(c, workdir)
    self.assertGreater(_results(workdir)["return/toy_first"], 0.0)


if __name__ == "__main__":
  absltest.main()
