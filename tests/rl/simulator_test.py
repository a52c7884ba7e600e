"""The user simulator: deterministic from its seed, its session mechanics (choice, budget with
the quality refund, satiation, interest, history), slates that never repeat a watched video,
returns-to-go, logging with propensities, and the property it exists for: greedy click
maximisation is not what maximises the session's watch time."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax.data import world as world_lib
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.rl import logs as logs_lib
from vidrec_jax.data import response
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.evaluation import random_policy


def _sim(arg="smoke", **changes):
  c = helpers.load_config(arg, "rl.py")
  c.rl.simulator.update(changes)
  world = world_lib.World(synthetic.world_args(c.data.dataset))
  return sim_lib.Simulator(world, sim_lib.SimArgs.from_config(c.rl.simulator))


class SimulatorTest(absltest.TestCase):

  def test_deterministic_from_the_seed(self):
    a, b = _sim(), _sim()
    np.testing.assert_array_equal(a.quality, b.quality)
    np.testing.assert_array_equal(a.initial_histories, b.initial_histories)
    policy = random_policy(a.num_videos, a.args.slate_size).policy
    users = np.arange(a.num_users)

    def run(s, key):
      return jax.device_get(s.rollout(policy, s.reset(users, s.initial_histories),
                                      jax.random.PRNGKey(key))[1])

    x, y, z = run(a, 0), run(b, 0), run(a, 1)
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    self.assertFalse(np.array_equal(x["slate"], z["slate"]))
    self.assertFalse(np.array_equal(_sim(seed=1).quality, a.quality))

  def test_one_step_budget_satiation_interest_and_history(self):
    sim = _sim(null_logit=-50.0)  # the user always clicks
    a = sim.args
    users = np.array([0, 1])
    hist = np.full((2, a.history_len), -1)
    hist[0] = np.arange(a.history_len)  # full: the oldest item drops out
    hist[1, :2] = [5, 6]
    state = sim.reset(users, hist)
    slate = jnp.array([[7, 8, 9], [10, 11, 12]])
    new, out = sim.step(state, slate, jax.random.PRNGKey(0))
    v = np.asarray(out["video"])
    self.assertTrue((v >= 0).all())
    np.testing.assert_array_equal(new["history"][0], list(range(1, a.history_len)) + [v[0]])
    np.testing.assert_array_equal(new["history"][1, :3], [5, 6, v[1]])
    self.assertEqual(int(new["hist_len"][1]), 3)
    q = sim.quality[v]
    spent = a.step_cost + np.asarray(out["reward"]) * (1 - a.refund / (1 + np.exp(-2 * q)))
    np.testing.assert_allclose(new["budget"], a.budget - spent, rtol=1e-5)
    topic = np.asarray(sim.arrays["topic"])[v]
    np.testing.assert_allclose(new["sat"][[0, 1], topic], a.satiation_step)
    self.assertEqual(float(new["sat"].sum()), 2 * a.satiation_step)
    share = np.asarray(out["reward"]) / np.asarray(sim.arrays["duration"])[v]
    np.testing.assert_allclose(new["interest"][[0, 1], topic], a.interest_step * (share - 0.5),
                               rtol=1e-5)
    self.assertTrue(bool(new["seen"][0, v[0]]) and bool(new["seen"][1, v[1]]))
    # Satiation lowers the logit of the topic's videos by satiation_weight per unit.
    shift = sim_lib.dynamics(a, new, jnp.asarray(topic)[:, None])[:, 0]
    np.testing.assert_allclose(shift, new["interest"][[0, 1], topic]
                               - a.satiation_weight * a.satiation_step, rtol=1e-5)

  def test_a_spent_budget_ends_the_session(self):
    sim = _sim(budget=3.0, session_steps=12)
    users = np.arange(sim.num_users)
    policy = random_policy(sim.num_videos, sim.args.slate_size).policy
    _, out = jax.device_get(sim.rollout(policy, sim.reset(users, sim.initial_histories),
                                        jax.random.PRNGKey(3)))
    alive = out["alive"]
    self.assertTrue(alive[0].all())
    self.assertFalse(alive[-1].any())
    self.assertTrue((np.diff(alive.astype(int), axis=0) <= 0).all())  # never revives
    self.assertEqual(float(out["reward"][~alive].sum()), 0.0)
    self.assertTrue((out["video"][~alive] == -1).all())

  def test_slates_never_repeat_a_video_watched_in_the_session(self):
    sim = _sim("", session_steps=40)
    users = np.arange(sim.num_users)
    policy = random_policy(sim.num_videos, sim.args.slate_size).policy
    _, out = jax.device_get(sim.rollout(policy, sim.reset(users, sim.initial_histories),
                                        jax.random.PRNGKey(0)))
    for b in range(0, sim.num_users, 7):
      clicks = out["video"][:, b]
      clicks = clicks[clicks >= 0]
      self.assertEqual(len(clicks), len(set(clicks.tolist())))
      for t in range(out["slate"].shape[0]):
        earlier = set(out["video"][:t, b][out["video"][:t, b] >= 0].tolist())
        self.assertFalse(earlier & set(out["slate"][t, b].tolist()))

  def test_returns_to_go(self):
    r = np.array([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
    g = np.asarray(sim_lib.session_returns(jnp.asarray(r), 0.5))
    np.testing.assert_allclose(g[:, 0], [1 + 0.5 * 2, 2, 0])
    np.testing.assert_allclose(g[:, 1], [0.5 + 0.25 * 3, 1 + 0.5 * 3, 3])

  def test_logs_record_the_behaviour_propensities_and_never_show_cold_videos(self):
    sim = _sim()
    policy = logs_lib.behaviour_policy(sim, 1.0)
    logs = logs_lib.collect(sim, policy, sim.initial_histories, 2, 0.9, jax.random.PRNGKey(0))
    self.assertEqual(logs.num_sessions, 2 * sim.num_users)
    self.assertFalse(sim.cold[logs.slate].any())
    static = np.asarray(sim.arrays["static_logit"])
    # The first step of a session has nothing masked but cold videos: beta is that softmax.
    first = np.flatnonzero(logs.step == 0)
    for i in first[:5]:
      lg = np.where(sim.cold, -np.inf, static[logs.user[i]])
      p = np.exp(lg - lg.max())
      p /= p.sum()
      np.testing.assert_allclose(logs.beta[i], p[logs.slate[i]], rtol=1e-4)
    clicked = logs.clicked
    np.testing.assert_array_equal(logs.video[clicked],
                                  logs.slate[clicked, logs.choice[clicked]])
    self.assertTrue((logs.reward[~clicked] == 0).all())

  def test_response_model_is_the_worlds(self):
    # The world's logged watch shares come from the same function the simulator uses.
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(response.watch_share(x, 0.0), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(np.asarray(response.watch_share(jnp.asarray(x), 0.0, xp=jnp)),
                               1 / (1 + np.exp(-x)), rtol=1e-6)


class LongTermTest(absltest.TestCase):

  def test_greedy_click_maximisation_is_not_optimal(self):
    """On the full-size simulator, the slate of the highest current click logits (the ideal
    greedy click ranker, knowing satiation and interest) gets fewer watch seconds per session
    than a ranker that trades some clicks for quality; both beat random slates."""
    sim = _sim("")
    a = sim.args
    topics = sim.arrays["topic"]

    def ranker(score):
      def policy(params, state, key):
        del params, key
        lg = sim_lib.masked_logits(score(state), state)
        slate = jax.lax.top_k(lg, a.slate_size)[1]
        return slate, jnp.ones(slate.shape)
      return policy

    def click(state):
      dyn = sim_lib.dynamics(a, state, jnp.broadcast_to(topics, state["seen"].shape))
      return sim.arrays["static_logit"][state["user"]] + dyn

    def quality(state):
      return click(state) + 2.0 * sim.arrays["quality"][None]

    users = np.arange(sim.num_users)
    ret = {}
    for name, policy in (("click", ranker(click)), ("quality", ranker(quality)),
                         ("random", random_policy(sim.num_videos, a.slate_size).policy)):
      _, out = sim.rollout(policy, sim.reset(users, sim.initial_histories),
                           jax.random.PRNGKey(0))
      ret[name] = float(out["reward"].sum(0).mean())
      if name == "click":
        clicks = float((out["video"] >= 0).sum(0).mean() / out["alive"].sum(0).mean())
    self.assertGreater(ret["quality"], 1.2 * ret["click"])
    self.assertGreater(ret["click"], ret["random"])
    self.assertGreater(clicks, 0.5)  # it does get clicks: just not the long sessions


if __name__ == "__main__":
  absltest.main()
