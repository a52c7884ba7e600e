"""Titles for the text tower: the text cache equals the public encoder's embeddings, bad titles
are counted and never fatal, identical titles share a group, token inputs for a trained tower."""

import os
import tempfile

import numpy as np
from absl.testing import absltest

import functools

from tests import helpers
from tests.main_test import run_main
from vidrec_jax.data import datasets
from vidrec_jax.data import features
from vidrec_jax.data import titles
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.models import text
from vidrec_jax.train import text_cache

TITLES = np.array(["ocean forest movie", "", " ".join(["volcano"] * 60), "Amélie",
                   "千と千尋の神隠し", "ocean forest movie"])


NAME = "all-MiniLM-L6-v2"


def _cached(d, max_length=32):
  return titles.TitleInputs.cached(TITLES, d, NAME, max_length)


class TitlesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    helpers.require_text_model()

  def test_cache_equals_the_public_encoder_and_counts_bad_titles(self):
    d = tempfile.mkdtemp()
    meta = text_cache.extract(NAME, 32, TITLES, d)
    self.assertEqual(meta["count"], len(TITLES))
    self.assertEqual(meta["empty"], 1)
    self.assertEqual(meta["truncated"], 1)  # 60 words > 32 tokens
    want = text.pretrained_sentence_encoder(max_length=32)(TITLES)
    inputs = _cached(d)
    np.testing.assert_allclose(inputs.embeddings, want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(inputs.embeddings[[0, 2, 3, 4]], axis=1), 1.0,
                               atol=1e-5)
    ex = inputs(5)
    np.testing.assert_array_equal(ex["title_emb"], inputs.embeddings[5])
    self.assertEqual(ex["title_group"], inputs(0)["title_group"])  # the same title
    self.assertNotEqual(inputs(1)["title_group"], inputs(0)["title_group"])

  def test_a_stale_cache_is_extracted_again_and_a_wrong_one_refused(self):
    d = tempfile.mkdtemp()
    text_cache.extract(NAME, 32, TITLES, d)
    with self.assertRaisesRegex(features.CacheError, "max_length=32"):
      _cached(d, max_length=16)
    with self.assertLogs(level="WARNING"):
      meta = text_cache.extract(NAME, 16, TITLES, d)
    self.assertEqual(meta["max_length"], 16)
    _cached(d, max_length=16)

  def test_a_trained_text_tower_gets_tokens(self):
    tok = text.load_tokenizer(NAME, 32)
    inputs = titles.TitleInputs.tokenized(TITLES, functools.partial(tok, length=32))
    ex = inputs(3)
    self.assertEqual(ex["title_ids"].shape, (32,))
    self.assertEqual(int(inputs(1)["title_mask"].sum()), 2)  # "" -> [CLS] [SEP]
    self.assertEqual(int(inputs(2)["title_mask"].sum()), 32)  # truncated
    self.assertNotIn("title_emb", ex)

  def test_non_utf8_titles_are_replaced_and_reported(self):
    raw = np.array([b"ocean movie", b"caf\xe9 \xff news", "ok"], dtype=object)
    with self.assertLogs(level="WARNING") as logs:
      out = synthetic.decode_titles(raw)
    self.assertEqual(out[0], "ocean movie")
    self.assertEqual(out[1], "caf\ufffd \ufffd news")
    self.assertIn("videos 1", "\n".join(logs.output))

  def test_extract_mode_writes_the_text_cache(self):
    workdir = tempfile.mkdtemp()
    r = run_main(f"--config={os.path.join(helpers.REPO, 'configs', 'demo.py')}:smoke,text",
                         f"--workdir={workdir}", "--mode=extract",
                         f"--config.data.data_dir={helpers.smoke_world_dir()}")
    self.assertEqual(r.returncode, 0, r.stderr[-2000:])
    meta = features.read_meta(os.path.join(workdir, "text_features"))
    catalog = datasets.get(helpers.load_config().data.dataset, helpers.smoke_world_dir()).catalog
    self.assertEqual(meta["count"], len(catalog))
    emb = np.load(os.path.join(workdir, "text_features", titles.EMBEDDINGS))
    self.assertEqual(emb.shape, (len(catalog), 384))


if __name__ == "__main__":
  absltest.main()
