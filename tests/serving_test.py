"""--mode=recommend and --mode=export through the real entry point, and the bundle they write
read back by vidrec_jax.serving alone: same videos, same order; a tampered bundle is refused."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from tests import helpers
from tests.main_test import CONFIG
from tests.main_test import run_main
from vidrec_jax import serving
from vidrec_jax.serving import fusion

FORMULA = "click * (1 + 0.1 * watch_time)"
SERVE = ["--config.recommend.candidates=12", f"--config.recommend.fusion={FORMULA}"]
FIELDS = {"rank", "video_id", "title", "content_type", "score", "scores", "cold"}


def _one_error_line(testcase, stderr: str) -> str:
  err = [line for line in stderr.splitlines() if line.startswith("error:")]
  testcase.assertLen(err, 1, stderr[-3000:])
  testcase.assertNotIn("Traceback", stderr)
  return err[0]


class ServingTest(absltest.TestCase):
  """One smoke run (trained 3 steps), its recommendations and its bundle, shared by the tests."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp()
    cls.data = f"--config.data.data_dir={helpers.smoke_world_dir()}"
    cls.common = [f"--config={CONFIG}:smoke", f"--workdir={cls.workdir}", cls.data]
    r = run_main(*cls.common, "--config.train.steps=3")
    assert r.returncode == 0, r.stderr[-3000:]
    cls.bundle_dir = os.path.join(tempfile.mkdtemp(), "bundle")
    r = run_main(*cls.common, *SERVE, "--mode=export", f"--export_dir={cls.bundle_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    cls.export_log = r.stderr
    cls.bundle = serving.load(cls.bundle_dir)
    cls.user = sorted(cls.bundle.users, key=int)[0]
    cls.runs = {u: run_main(*cls.common, *SERVE, "--mode=recommend", f"--user={u}", "--k=5")
                for u in (cls.user, "nobody")}

  def _json(self, user: str) -> dict:
    r = self.runs[user]
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    with open(os.path.join(self.workdir, "recommend", f"{user}.json")) as f:
      return json.load(f)

  def test_the_catalog_is_encoded_once_per_checkpoint(self):
    self.assertIn("encoded the catalog's", self.export_log)
    for user in (self.user, "nobody"):  # later calls read the export's item vectors
      self.assertIn("item vectors of checkpoint step 3 read from", self.runs[user].stderr)
      self.assertNotIn("encoded the catalog's", self.runs[user].stderr)
    self.assertEqual(os.listdir(os.path.join(self.workdir, "recommend")).count(
        "item_vectors-3.npz"), 1)

  def test_recommend_writes_k_records_by_descending_fused_score(self):
    out = self._json(self.user)
    self.assertEqual((out["user"], out["k"], out["checkpoint_step"], out["fusion"],
                      out["candidates"]), (self.user, 5, 3, FORMULA, 12))
    self.assertNotIn("note", out)
    recs = out["records"]
    self.assertLen(recs, 5)
    self.assertEqual([r["rank"] for r in recs], [1, 2, 3, 4, 5])
    for r in recs:
      self.assertEqual(set(r), FIELDS)
      self.assertEqual(set(r["scores"]), {"click", "watch_time"})
      s = r["scores"]
      self.assertAlmostEqual(r["score"], s["click"] * (1 + 0.1 * s["watch_time"]), places=5)
    scores = [r["score"] for r in recs]
    self.assertEqual(scores, sorted(scores, reverse=True))
    lines = self.runs[self.user].stdout.splitlines()
    self.assertLen(lines, 5)
    for line, r in zip(lines, recs):
      self.assertIn(f"video {r['video_id']}", line)
      self.assertEqual(line.endswith("cold"), r["cold"], line)

  def test_unknown_user_gets_the_oov_users_list_and_a_note(self):
    out = self._json("nobody")
    self.assertIn("not in the user vocabulary", out["note"])
    notes = [l for l in self.runs["nobody"].stderr.splitlines() if l.startswith("note:")]
    self.assertLen(notes, 1)
    self.assertEqual(self.bundle.row("nobody"), self.bundle.oov_row)
    self.assertEqual(out["records"], self.bundle.recommend("another stranger", 5))

  def test_bundle_reproduces_recommend_mode(self):
    for user in (self.user, "nobody"):
      want = self._json(user)["records"]
      got = self.bundle.recommend(user, 5)
      self.assertEqual([r["video_id"] for r in got], [r["video_id"] for r in want])
      for g, w in zip(got, want):
        self.assertEqual({k: g[k] for k in FIELDS - {"score", "scores"}},
                         {k: w[k] for k in FIELDS - {"score", "scores"}})
        self.assertAlmostEqual(g["score"], w["score"], places=6)
    self.assertIsNotNone(self.bundle.note("nobody"))
    self.assertIsNone(self.bundle.note(self.user))
    m = self.bundle.manifest
    self.assertEqual((m["k"], m["candidates"], m["checkpoint_step"], m["heads"]),
                     (10, 12, 3, ["click", "watch_time"]))
    self.assertEqual(self.bundle.fusion, FORMULA)

  def test_bundle_serves_without_the_trainer(self):
    code = ("import sys, json; from vidrec_jax import serving; "
            f"b = serving.load({self.bundle_dir!r}); "
            f"print(json.dumps([r['video_id'] for r in b.recommend({self.user!r}, 5)])); "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('flax', 'optax', "
            "'grain', 'vidrec_jax.models.', 'vidrec_jax.train', 'vidrec_jax.data')))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=helpers.REPO, timeout=300, check=False)
    self.assertEqual(r.returncode, 0, r.stderr[-3000:])
    ids, modules = map(json.loads, r.stdout.splitlines()[-2:])
    self.assertEqual(ids, [x["video_id"] for x in self._json(self.user)["records"]])
    self.assertEqual(modules, [])

  def test_a_format_1_bundle_is_read_and_a_history_refused(self):
    m = self.bundle.manifest
    self.assertEqual((m["format_version"], m["user_input"]), (2, "row"))
    self.assertNotIn(serving.HISTORIES, m["files"])

    def as_format_1(m):
      for key in ("user_input", "max_len", "exclude_watched", "model", "user_tower"):
        del m[key]  # format 1 wrote none of these
      m["format_version"] = 1
    old = serving.load(helpers.bundle_with_manifest(self.bundle_dir, as_format_1))
    self.assertEqual(old.recommend(self.user, 5), self.bundle.recommend(self.user, 5))
    with self.assertRaisesRegex(ValueError, "reads user ids, not watch histories"):
      self.bundle.recommend(history=[1, 2], k=5)

  def test_tampered_bundle_is_refused_naming_the_file(self):
    def tampered(edit):
      d = os.path.join(tempfile.mkdtemp(), "b")
      shutil.copytree(self.bundle_dir, d)
      edit(d)
      with self.assertRaises(serving.BundleError) as cm:
        serving.load(d)
      self.assertNotIn("\n", str(cm.exception))
      return str(cm.exception)

    def flip_byte(d):
      path = os.path.join(d, serving.RANKER)
      with open(path, "rb") as f:
        data = bytearray(f.read())
      data[len(data) // 2] ^= 1
      with open(path, "wb") as f:
        f.write(bytes(data))
    self.assertIn(serving.RANKER, tampered(flip_byte))
    self.assertIn("sha256", tampered(flip_byte))
    self.assertIn(serving.USERS, tampered(lambda d: os.remove(os.path.join(d, serving.USERS))))

    def wrong_shape(d):  # a manifest edited to disagree with the (intact) items file
      path = os.path.join(d, serving.MANIFEST)
      with open(path) as f:
        m = json.load(f)
      m["shapes"]["items"]["ranking"][0] += 1
      with open(path, "w") as f:
        json.dump(m, f)
    msg = tampered(wrong_shape)
    self.assertIn(serving.ITEMS, msg)
    self.assertIn("ranking", msg)

  def test_missing_checkpoint_is_one_line_error(self):
    r = run_main(f"--config={CONFIG}:smoke", f"--workdir={tempfile.mkdtemp()}", self.data,
                 "--mode=recommend", "--user=1")
    self.assertEqual(r.returncode, 1, r.stderr[-3000:])
    self.assertIn("no checkpoint in", _one_error_line(self, r.stderr))


class BadConfigTest(parameterized.TestCase):

  @parameterized.parameters(
      ("--config.recommend.fusion=like * 2", "recommend.fusion"),
      ("--config.recommend.fusion=__import__('os').system('true')", "recommend.fusion"),
  )
  def test_one_line_error_naming_the_field(self, override, field):
    r = run_main(f"--config={CONFIG}:smoke", f"--workdir={tempfile.mkdtemp()}",
                 "--mode=recommend", "--user=1", override)
    self.assertEqual(r.returncode, 2, r.stderr[-3000:])
    self.assertIn(field, _one_error_line(self, r.stderr))

  def test_a_fusion_of_missing_heads_is_refused(self):
    from vidrec_jax import validate  # pylint: disable=g-import-not-at-top
    c = helpers.load_config("smoke", "rl.py")  # the RL policy serves its logits: "score"
    c.mode = "export"
    validate.validate(c)
    c.recommend.fusion = "click"
    with self.assertRaisesRegex(validate.ConfigError, "recommend.fusion.*unknown name 'click'"):
      validate.validate(c)
    c = helpers.load_config("smoke", "microlens.py")  # one output: "score"
    c.mode, c.data.dataset.path, c.recommend.fusion = "export", tempfile.mkdtemp(), "click"
    with self.assertRaisesRegex(validate.ConfigError, "recommend.fusion.*unknown name 'click'"):
      validate.validate(c)


class FusionTest(parameterized.TestCase):

  def test_numpy_and_jax_agree(self):
    f = fusion.compile_formula("max(click, 0.2) * exp(-log(1 + watch_time)) - 2 ** -like",
                               ("click", "watch_time", "like"))
    v = {"click": np.array([0.1, 0.7], np.float32), "watch_time": np.array([0.0, 9.0], np.float32),
         "like": np.array([0.5, 0.25], np.float32)}
    want = np.maximum(v["click"], 0.2) / (1 + v["watch_time"]) - 2.0 ** -v["like"]
    np.testing.assert_allclose(f(v), want, rtol=1e-6)
    got = jax.jit(f)({k: jnp.asarray(x) for k, x in v.items()})
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    self.assertEqual(f(v).shape, (2,))
    np.testing.assert_array_equal(fusion.compile_formula("3", ("click",))(v), [3.0, 3.0])

  @parameterized.parameters(
      ("", "empty"), ("click +", "syntax error"), ("like", "unknown name 'like'"),
      ("click % 2", "not allowed"), ("abs(click)", "not allowed"), ("click.real", "not allowed"),
      ("log(click, 2)", "takes 1 argument"), ("max(click)", "2 or more"), ("'x'", "not a number"),
      ("click if click else 0", "not allowed"), ("log", "call it as log(...)"))
  def test_refused_in_one_line(self, text, why):
    with self.assertRaises(fusion.FormulaError) as cm:
      fusion.compile_formula(text, ("click", "watch_time"))
    self.assertIn(why, str(cm.exception))
    self.assertIn("allowed: the names click, watch_time", str(cm.exception))
    self.assertNotIn("\n", str(cm.exception))


if __name__ == "__main__":
  absltest.main()


class MultitaskTrunkTest(absltest.TestCase):
  """configs/multitask.py (a PLE trunk, click, watch time and like heads, its fusion formula)
  exports and serves: the bundle's list is --mode=recommend's, each record with every head."""

  def test_the_multitask_model_serves(self):
    from vidrec_jax import experiment  # pylint: disable=g-import-not-at-top
    from vidrec_jax import export  # pylint: disable=g-import-not-at-top
    from vidrec_jax import recommend  # pylint: disable=g-import-not-at-top
    cfg = helpers.load_config("smoke,ple", "multitask.py")
    cfg.data.data_dir = helpers.smoke_world_dir()
    cfg.train.steps = 2
    workdir = tempfile.mkdtemp()
    experiment.train(cfg, workdir)
    cfg.mode = "export"
    restored = experiment.restore(cfg, workdir, "latest", "export")
    b = serving.load(export.export(restored, workdir, os.path.join(workdir, "bundle")))
    self.assertEqual(b.heads, tuple(cfg.model.heads))
    self.assertEqual(b.fusion, cfg.recommend.fusion)
    user = sorted(b.users)[0]
    want = recommend.recommend(restored, workdir, user, 5)["records"]
    got = b.recommend(user, 5)
    self.assertEqual([r["video_id"] for r in got], [r["video_id"] for r in want])
    for r in got:
      self.assertEqual(set(r["scores"]), set(cfg.model.heads))
