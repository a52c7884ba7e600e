"""all-MiniLM-L6-v2 port: parity with sentence-transformers on real titles, text cleaning, strict
conversion, and the encoder's own invariants on a tiny random BERT."""

import functools
import importlib.util
import os

# The reference must load from the installed folder, never from the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl.testing import absltest  # noqa: E402
from flax import nnx  # noqa: E402

from tests import torch_refs  # noqa: E402
from vidrec_jax import checkpoints  # noqa: E402
from vidrec_jax.checkpoints import convert  # noqa: E402
from vidrec_jax.models import text  # noqa: E402

NAME = "all-MiniLM-L6-v2"
BATCH = 16  # small chunks: the length-sorted titles run at short padded lengths


def _require_model() -> str:
  try:
    return text.model_dir(NAME)
  except FileNotFoundError as e:
    raise absltest.SkipTest(f"the {NAME} weights are not installed: {e}") from e


def _require_tokenizers() -> None:
  if importlib.util.find_spec("tokenizers") is None:
    raise absltest.SkipTest("the `tokenizers` package is not installed (pip install tokenizers)")


@functools.cache
def _encoder():
  return text.pretrained_sentence_encoder(NAME, batch_size=BATCH)


def movielens_titles() -> tuple[list[str], list[str]]:
  """30 MovieLens-100K titles (every 56th) and the first 150, from tests/models/data."""
  path = os.path.join(os.path.dirname(__file__), "data", "movielens_titles.txt")
  with open(path, encoding="utf-8") as f:
    lines = [line.rstrip("\n") for line in f if not line.startswith("#")]
  return lines[:30], lines[30:]


def real_sentences() -> list[str]:
  """30 MovieLens titles (every 56th) plus edge cases; the long text exceeds 256 tokens."""
  sample, first = movielens_titles()
  return sample + [
      "",
      "   ",
      " ; ".join(first),  # several hundred WordPiece tokens: truncated to 256
      "Amélie",
      "千と千尋の神隠し",
      "Добро пожаловать",
      "Á köldum klaka (Cold Fever)",
      "A family-friendly animated adventure about toys that come to life.",
      "Documentary on the making of a silent film, 1927 — restored & re-scored!",
      "\t tabs\nand newlines  ",
  ]


class ParityTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    path = _require_model()
    _require_tokenizers()
    try:
      torch_refs.torchvision_module()  # transformers imports it when it is installed
    except ImportError:
      pass  # not installed: transformers does without it
    try:
      from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise absltest.SkipTest(f"the reference needs torch and sentence-transformers ({e}); "
                              "they come with the test extras") from e
    cls.reference = SentenceTransformer(path, device="cpu")
    cls.sentences = real_sentences()

  def test_sentence_embeddings_match_the_reference(self):
    ours, stats = _encoder()(self.sentences, return_stats=True)
    theirs = self.reference.encode(self.sentences, convert_to_numpy=True,
                                   normalize_embeddings=False, batch_size=BATCH)
    self.assertEqual(ours.shape, (len(self.sentences), 384))
    self.assertEqual(ours.dtype, np.float32)
    diff = np.abs(ours - theirs).max(axis=1)
    cos = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) *
                                    np.linalg.norm(theirs, axis=1))
    worst = int(np.argmax(diff))
    self.assertLessEqual(float(diff.max()), 1e-5, f"worst: {self.sentences[worst][:60]!r}")
    self.assertGreaterEqual(float(cos.min()), 0.99999,
                            f"worst: {self.sentences[int(np.argmin(cos))][:60]!r}")
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    self.assertEqual((stats.count, stats.empty, stats.truncated), (len(self.sentences), 1, 1))
    # Real titles are distinct sentences, not one collapsed vector.
    sims = ours[:30] @ ours[:30].T
    self.assertLess(float(sims[~np.eye(30, dtype=bool)].max()), 0.95)

  def test_token_ids_match_the_reference_tokenizer(self):
    arrays, _ = _encoder().tokenizer(self.sentences)
    theirs = self.reference.tokenizer(self.sentences, truncation=True,
                                      max_length=self.reference.max_seq_length)["input_ids"]
    self.assertEqual(self.reference.max_seq_length, 256)
    for i, ids in enumerate(theirs):
      n = int(arrays["attention_mask"][i].sum())
      self.assertEqual(arrays["input_ids"][i, :n].tolist(), list(ids), self.sentences[i][:60])
    self.assertEqual(arrays["input_ids"].shape[1], 256)
    self.assertEqual(arrays["input_ids"].dtype, np.int32)


class TextCleaningTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    path = _require_model()
    _require_tokenizers()
    cls.tokenizer = text.TextTokenizer(os.path.join(path, "tokenizer.json"), 256, 512)

  def test_invalid_utf8_is_replaced_and_counted(self):
    texts = [b"Caf\xc3\xa9 \xff\xfe au lait", "plain", b"ok \xef\xbf\xbd kept", bytearray(b"\xc3")]
    clean, stats = text.clean_texts(texts)
    self.assertEqual(clean, ["Caf\u00e9 \ufffd\ufffd au lait", "plain", "ok \ufffd kept",
                             "\ufffd"])
    # Two bad bytes, one truncated sequence; a genuine U+FFFD in the input is not counted.
    self.assertEqual((stats.decoded, stats.replaced), (3, 3))

  def test_missing_and_empty_titles_become_cls_sep(self):
    arrays, stats = self.tokenizer([None, "", float("nan"), "Toy Story"])
    self.assertEqual((stats.missing, stats.empty, stats.count), (2, 3, 4))
    for i in range(3):
      self.assertEqual(arrays["input_ids"][i, :3].tolist(), [101, 102, 0])
      self.assertEqual(arrays["attention_mask"][i, :3].tolist(), [1, 1, 0])
    self.assertEqual(arrays["input_ids"].shape, (4, text.PAD_MULTIPLE))  # bucketed length

  def test_long_titles_are_truncated_and_counted(self):
    tok = text.TextTokenizer(os.path.join(_require_model(), "tokenizer.json"), 8, 512)
    arrays, stats = tok(["one two three four five six seven eight", "one two three four five six",
                         "one two"])
    self.assertEqual(stats.truncated, 1)  # 6 words + [CLS] [SEP] fit exactly
    self.assertEqual(arrays["attention_mask"].sum(1).tolist(), [8, 8, 4])
    self.assertEqual(arrays["input_ids"][0, 7], 102)  # [SEP] kept at the end

  def test_rejects_non_text(self):
    with self.assertRaisesRegex(TypeError, "text 1 is a int"):
      text.clean_texts(["a", 3])
    with self.assertRaisesRegex(TypeError, "single str"):
      text.clean_texts("a title")

  def test_encoder_decodes_bytes_like_strings_and_logs_once(self):
    enc = _encoder()
    with self.assertLogs("absl", level="INFO") as logs:
      got, stats = enc([b"Am\xc3\xa9lie", None, b"\xffbad"], return_stats=True)
    self.assertLen(logs.records, 1)
    self.assertIn("1 invalid UTF-8 sequences replaced", logs.output[0])
    self.assertEqual((stats.decoded, stats.replaced, stats.missing), (2, 1, 1))
    want = enc(["Amélie", "", "\ufffdbad"])
    np.testing.assert_array_equal(got, want)

  def test_unknown_model_and_missing_package(self):
    with self.assertRaisesRegex(ValueError, "registered: all-MiniLM-L6-v2$"):
      text.pretrained_sentence_encoder("all-mpnet-base-v2")
    text.TEXT_MODELS.register("fake", text.TextModelSpec("no_such_text_model_pkg",
                                                         "no-such-text-model==9.9"))
    self.addCleanup(text.TEXT_MODELS.unregister, "fake")
    with self.assertRaisesRegex(FileNotFoundError, r"pip install --no-deps no-such-text-model"):
      text.pretrained_sentence_encoder("fake")


class ConversionTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    path = _require_model()
    cls.tensors = checkpoints.read(os.path.join(path, "model.safetensors"))
    cls.targets = convert.targets_of(nnx.state(
        text.abstract_encoder(text.bert_config(NAME)), nnx.Param))

  def test_every_parameter_filled_and_only_pooler_and_position_ids_left(self):
    out = convert.convert(self.tensors, self.targets, text.bert_rules(), text.BERT_IGNORE)
    self.assertEqual(set(out), set(self.targets))
    self.assertEqual(sum(v.size for v in out.values()), 22_565_376)
    with self.assertRaisesRegex(convert.ConversionError,
                                r"unexpected checkpoint tensors: embeddings.position_ids, "
                                r"pooler.dense.bias, pooler.dense.weight$"):
      convert.convert(self.tensors, self.targets, text.bert_rules(), ())

  def test_missing_tensor_is_named(self):
    partial = {k: v for k, v in self.tensors.items() if k != "encoder.layer.5.output.dense.bias"}
    with self.assertRaisesRegex(convert.ConversionError,
                                r"layers/5/output/bias <- encoder.layer.5.output.dense.bias"):
      convert.convert(partial, self.targets, text.bert_rules(), text.BERT_IGNORE)

  def test_hidden_states_and_pooling_of_the_loaded_module(self):
    _require_tokenizers()
    model, tok = text.load_text_encoder(NAME)
    self.assertLen(model.layers, 6)
    arrays, _ = tok(["Toy Story", "Cape Fear"])
    run = nnx.jit(lambda m, a: m(a["input_ids"], a["attention_mask"], a["token_type_ids"],
                                 return_hidden_states=True))
    states, hidden = run(model, arrays)
    self.assertLen(hidden, 7)
    np.testing.assert_array_equal(hidden[-1], states)
    pooled = text.l2_normalize(text.mean_pool(states, arrays["attention_mask"]))
    np.testing.assert_allclose(pooled, _encoder()(["Toy Story", "Cape Fear"]), atol=2e-6)


@nnx.jit
def _states(model, ids, mask):
  return model(ids, mask)


TINY = text.BertConfig(vocab_size=50, hidden=32, num_layers=2, num_heads=4, intermediate=64,
                       max_positions=40, type_vocab_size=2)


class TinyBertTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.model = text.BertEncoder(TINY, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    self.ids = rng.integers(1, 50, (3, 16)).astype(np.int32)
    self.mask = (np.arange(16)[None] < np.array([[16], [5], [2]])).astype(np.int32)

  def test_padding_does_not_change_real_tokens(self):
    states = _states(self.model, self.ids, self.mask)
    ids = np.where(self.mask, self.ids, 7)  # different padding content, longer padding
    ids = np.pad(ids, ((0, 0), (0, 16)), constant_values=0)
    mask = np.pad(self.mask, ((0, 0), (0, 16)))
    padded = _states(self.model, ids, mask)
    real = self.mask.astype(bool)
    np.testing.assert_allclose(np.asarray(padded)[:, :16][real], np.asarray(states)[real],
                               atol=1e-5)
    np.testing.assert_allclose(text.mean_pool(padded, mask), text.mean_pool(states, self.mask),
                               atol=1e-5)

  def test_bfloat16_compute_is_close_to_float32(self):
    ref = text.l2_normalize(text.mean_pool(_states(self.model, self.ids, self.mask), self.mask))
    bf16 = text.BertEncoder(TINY, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    nnx.update(bf16, nnx.state(self.model, nnx.Param))
    states = _states(bf16, self.ids, self.mask)
    self.assertEqual(states.dtype, jnp.bfloat16)
    got = text.l2_normalize(text.mean_pool(states, self.mask))
    self.assertEqual(got.dtype, jnp.float32)
    self.assertGreater(float(jnp.min(jnp.sum(got * ref, -1))), 0.99)

  def test_parameters_carry_logical_axis_names(self):
    abstract = text.abstract_encoder(TINY)
    names = {k: v.get_metadata().get("out_sharding")
             for k, v in convert.flat_params(nnx.state(abstract, nnx.Param)).items()}
    self.assertEqual(names["embeddings/word/embedding"], ("vocab", "embed"))
    self.assertEqual(names["layers/1/attention/query/kernel"], ("embed", "heads"))
    self.assertEqual(names["layers/1/attention/out/kernel"], ("heads", "embed"))
    self.assertEqual(names["layers/0/intermediate/kernel"], ("embed", "mlp"))
    self.assertEqual(names["layers/0/output/kernel"], ("mlp", "embed"))
    self.assertEqual(names["layers/0/output_norm/scale"], ("embed",))
    self.assertTrue(all(n is not None for n in names.values()), names)
    leaves = jax.tree_util.tree_leaves(nnx.state(abstract, nnx.Param))
    self.assertTrue(all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves))

  def test_too_long_input_is_refused(self):
    with self.assertRaisesRegex(ValueError, "exceeds the 40 positions"):
      self.model(np.zeros((1, 48), np.int32), np.ones((1, 48), np.int32))


class TextLabelTest(absltest.TestCase):

  def test_train_modes_label_the_encoder(self):
    paths = ["embeddings/word/embedding", "layers/0/attention/query/kernel",
             "layers/4/output/bias", "layers/5/output_norm/scale"]
    want = {"frozen": ["frozen"] * 4, "top_layers": ["frozen", "frozen", "text", "text"],
            "full": ["text"] * 4}
    for mode, labels in want.items():
      self.assertEqual([text.text_label(p, mode, 2, 6) for p in paths], labels, mode)


if __name__ == "__main__":
  absltest.main()
