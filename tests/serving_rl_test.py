"""Serving a trained RL policy (vidrec_jax/rl/serve.py): the RL experiment at smoke size, one
policy exported and answered by the bundle alone. Its list is the policy's own top K (its
logits over the corpus, the history's videos left out), for a simulator user from their logged
history and for a history given in the request; the bundle answers as --mode=recommend; a
policy or seed the experiment does not have, or an untrained policy, is refused in one line."""

import os
import subprocess
import sys
import tempfile

import jax
import numpy as np
from absl.testing import absltest

from tests import helpers
from vidrec_jax import experiment
from vidrec_jax import export
from vidrec_jax import recommend
from vidrec_jax import serving
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.rl import serve

POLICIES = ("random", "greedy", "reinforce_topk")


def _config(mode="rl"):
  c = helpers.load_config("smoke", "rl.py")
  c.rl.update(policies=POLICIES, seeds=(0,))
  c.mode = mode
  return c


class PolicyServingTest(absltest.TestCase):

  K = 4

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp()
    experiment.rl(_config(), cls.workdir)
    cls.policy = experiment.restore_policy(_config("export"), cls.workdir, "latest",
                                           "reinforce_topk", None)
    cls.servable = serve.servable(cls.policy)
    cls.bundle_dir = export.export_servable(
        cls.servable, cls.policy.spec, cls.workdir, os.path.join(tempfile.mkdtemp(), "b"),
        "latest", lambda ids, size: serve.thumbnails(cls.policy.world, ids, size),
        policy="reinforce_topk", rl_seed=0)
    cls.bundle = serving.load(cls.bundle_dir)

  def _policy_top_k(self, history: np.ndarray, k: int) -> tuple[list[int], np.ndarray]:
    """The policy's own top k (video ids, logits) for a -1 padded history, its videos left
    out: what the simulator would show at the start of a session from it."""
    p = self.policy
    model = p.setup.model(p.params)
    h = np.asarray(history, np.int64)[None]
    logits = np.array(model.logits({"history": jax.numpy.asarray(h),
                                      "history_mask": jax.numpy.asarray((h >= 0), np.float32)},
                                     p.catalog)[0][0])
    watched = h[0][h[0] >= 0]
    logits[watched] = -np.inf
    top = np.argsort(-logits, kind="stable")[:k]
    return top.tolist(), logits[top]

  def test_a_users_list_is_the_policys_top_k_from_their_logged_history(self):
    self.assertLen(self.bundle.users, len(self.policy.histories))
    checked = 0
    for u, history in enumerate(self.policy.histories):
      want, logits = self._policy_top_k(history, self.K)
      got = self.bundle.recommend(str(u), self.K)
      self.assertEqual([r["video_id"] for r in got], want, f"user {u}")
      np.testing.assert_allclose([r["score"] for r in got], logits, rtol=1e-4, atol=1e-4)
      checked += len(history[history >= 0]) > 0
    self.assertGreater(checked, 10)  # most simulator users have a history

  def test_a_history_in_the_request_is_ranked_as_the_policy_would(self):
    history = [5, 11, 2]
    padded = np.full(self.policy.spec.data.history.max_len, -1)
    padded[:len(history)] = history
    want, _ = self._policy_top_k(padded, self.K)
    got = self.bundle.recommend(history=history, k=self.K)
    self.assertEqual([r["video_id"] for r in got], want)
    self.assertEmpty(set(want) & set(history))

  def test_the_bundle_answers_as_recommend_mode(self):
    for user in ("0", "7", "no-such-user"):
      out = recommend.recommend_servable(self.servable, self.policy.spec, self.workdir, user,
                                         self.K)
      self.assertEqual(out["records"], self.bundle.recommend(user, self.K), user)
    self.assertIn("note", out)  # the unknown user gets the list of a user with no history

  def test_manifest_and_thumbnails(self):
    m = self.bundle.manifest
    self.assertEqual((m["model"], m["policy"], m["rl_seed"], m["heads"]),
                     ("policy", "reinforce_topk", 0, ["score"]))
    self.assertEqual(self.bundle.fusion, "score")
    jpeg = self.bundle.thumbnail(0)
    self.assertTrue(jpeg.startswith(b"\xff\xd8"), jpeg[:4])

  def test_what_the_experiment_lacks_is_refused_in_one_line(self):
    cfg = _config("export")
    with self.assertRaisesRegex(FileNotFoundError, "untrained policy has no model"):
      experiment.restore_policy(cfg, self.workdir, "latest", "random", None)
    with self.assertRaisesRegex(ConfigError, r"--policy=bogus is not one of rl.policies"):
      experiment.restore_policy(cfg, self.workdir, "latest", "bogus", None)
    with self.assertRaisesRegex(ConfigError, r"--rl_seed=3 is not one of rl.seeds: 0"):
      experiment.restore_policy(cfg, self.workdir, "latest", "greedy", 3)
    with self.assertRaisesRegex(FileNotFoundError, "run the experiment"):
      experiment.restore_policy(cfg, tempfile.mkdtemp(), "latest", "greedy", None)

  def test_cli_needs_a_policy(self):
    proc = subprocess.run(
        [sys.executable, "-m", "vidrec_jax.main", "--config=configs/rl.py:smoke",
         f"--workdir={self.workdir}", "--mode=export",
         f"--config.rl.policies={POLICIES}", "--config.rl.seeds=(0,)"],
        cwd=helpers.REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    self.assertEqual(proc.stderr.strip().splitlines()[-1],
                     "error: serving an RL experiment needs --policy=NAME, one of rl.policies: "
                     "random, greedy, reinforce_topk")


if __name__ == "__main__":
  absltest.main()
