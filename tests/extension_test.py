"""Adding parts from a test file alone, without editing any library file: a toy head, a toy
retrieval task and a toy evaluator train and evaluate through the real entry point; a toy
pooling takes its own arguments from `model.pooling_args`; a per-video item feature reaches the
item tower through the pipeline; a toy trainer takes its own setting
from `train.trainer_args` and reuses the shared loop's checkpointing, resume and NaN halting;
a toy dataset without an oracle gets no oracle metrics; a module outside the library, named in
`config.imports`, brings a frame encoder with a clip input of its own (faked in random batches
from its op's declaration); registries find their parts by name. RL policies:
tests/extension_rl_test.py."""

import json
import os
import sys
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx

from tests import helpers
from tests.train import fixtures
from vidrec_jax import experiment
from vidrec_jax import metrics as M
from vidrec_jax import validate
from vidrec_jax.config_checks import ConfigError
from vidrec_jax.config_checks import check
from vidrec_jax.data import datasets
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.eval.evaluators import Evaluator
from vidrec_jax.models import layers
from vidrec_jax.models import recommender
from vidrec_jax.models.heads import HEADS
from vidrec_jax.models.heads import Head
from vidrec_jax.models.item_features import ITEM_FEATURES
from vidrec_jax.models.item_features import ItemFeature
from vidrec_jax.models.poolings import POOLINGS
from vidrec_jax.models.poolings import Pooling
from vidrec_jax.models.poolings import segment_means
from vidrec_jax.models.tasks import RetrievalTask
from vidrec_jax.models.tasks import TASKS
from vidrec_jax.models.tasks import logit_scale
from vidrec_jax.models.text import l2_normalize
from vidrec_jax.registry import Registry
from vidrec_jax.train import runner
from vidrec_jax.train import steps
from vidrec_jax.train.trainers import TRAINERS
from vidrec_jax.train.trainers import Trainer


class LikeBrierHead(Head):
  """Like probability with a squared-error (Brier) loss; reports its Brier score."""

  labels = ("like",)

  @staticmethod
  def loss(raw, outputs, batch):
    return jnp.square(jax.nn.sigmoid(raw) - batch["like"])

  @staticmethod
  def predict(raw):
    return jax.nn.sigmoid(raw)

  @staticmethod
  def metrics(g):
    return {"toy_brier": M.mse(g.labels["like"], g.pred)}

  @staticmethod
  def table_columns(ndcg_k):
    return ("toy_brier",)


class TwoProjections(RetrievalTask):
  """Two projections of a clip's content vector should find each other."""

  def __init__(self, *, content_dim, text_dim, dim, dtype, param_dtype, rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.a = layers.dense(content_dim, dim, ("embed", "mlp"), **kw)
    self.b = layers.dense(content_dim, dim, ("embed", "mlp"), **kw)
    self.scale = logit_scale()

  def embeddings(self, model, batch, inter):
    return {"a": l2_normalize(self.a(inter["content"])),
            "b": l2_normalize(self.b(inter["content"]))}

  def pairs(self, model, batch, inter):
    e = self.embeddings(model, batch, inter)
    return e["a"], e["b"], self.scale[...]

  @staticmethod
  def evaluate(view):
    rows = np.flatnonzero(view.decodable)
    ranks = M.retrieval_ranks(view.emb["a"][rows], view.emb["b"][rows], np.arange(len(rows)))
    return {"all/mrr": M.retrieval_metrics(ranks)["mrr"], "all/count": float(len(rows))}


class CatalogSize(Evaluator):
  """Counts the catalog's cold-start videos (an evaluator with a typed argument)."""

  def __init__(self, ctx, *, prefix: str):
    super().__init__(ctx)
    self.prefix = prefix

  def evaluate(self, enc, splits):
    return {f"{self.prefix}/cold_videos": float(self.ctx.dataset.catalog.cold.sum())}


class FakeBatchTrainer(Trainer):
  """Trains the recommender on fixture batches (seeded by `seed_offset` + step) with the
  supervised step; `seed_offset` is a setting of its own (`train.trainer_args`)."""

  started_at = []

  def __init__(self, ctx, *, seed_offset: int = 0):
    super().__init__(ctx)
    self.seed_offset = seed_offset

  @classmethod
  def needs(cls, *, seed_offset=0):
    # A rule on another section: it is handed the one value it names, not the config.
    del seed_offset
    return [("data.batch_size", lambda b: check(b % 2 == 0, "data.batch_size", b,
                                                "the toy trainer halves its batches: even"))]

  @classmethod
  def validate(cls, *, seed_offset=0):
    if not isinstance(seed_offset, int) or seed_offset < 0:
      raise ConfigError(f"config.train.trainer_args.seed_offset={seed_offset!r} is not "
                        "allowed; a non-negative integer")

  def batches(self, start_step, saved_position):
    FakeBatchTrainer.started_at.append(start_step)
    step = start_step
    while True:
      step += 1
      yield fixtures.fake_batch(self.run, seed=self.seed_offset + step)

  def step_fn(self):
    s = self.setup
    return jax.jit(lambda state, batch: steps.train_step(s, state, batch),
                   in_shardings=(s.state_shardings, None), out_shardings=(s.state_shardings, None))

  def observe(self, batch):
    return float(batch["weight"].sum())


class RunsPooling(Pooling):
  """A pooling with an argument of its own: the masked means of `runs` equal runs of frames."""

  def __init__(self, features, *, runs: int, dtype, param_dtype, rngs):
    super().__init__(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.runs, self.out_features = runs, runs * features

  @classmethod
  def validate(cls, *, runs):
    if runs < 1:
      raise ConfigError(f"config.model.pooling_args.runs: {runs!r}: at least 1")

  def __call__(self, x, mask):
    return segment_means(x, mask, self.runs).reshape(x.shape[0], -1)


class PublishAge(ItemFeature):
  """A per-video feature: when the video was published, standardised over the catalog."""

  @classmethod
  def values(cls, catalog):
    t = np.asarray(catalog.publish_time, np.float64)
    return ((t - t.mean()) / max(t.std(), 1e-9)).astype(np.float32)[:, None]


class NoOracleWorld(synthetic.SyntheticWorld):
  """The synthetic world's records, declared without an oracle."""

  def load(self, data_dir, args):
    ds = super().load(data_dir, args)
    return datasets.RecDataset(
        name="toy_no_oracle", catalog=ds.catalog, splits=ds.splits,
        label_columns=ds.label_columns,
        capabilities=ds.capabilities - {datasets.ORACLE}, train_end=ds.train_end)


def _register(registry, name, part, test):
  registry.register(name, part)
  test.addCleanup(registry.unregister, name)


def _smoke(workdir_config=None):
  c = helpers.load_config()
  c.data.data_dir = helpers.smoke_world_dir()
  c.train.update(steps=4, checkpoint_every=2, log_every=2)
  if workdir_config:
    workdir_config(c)
  return c


class ExtensionTest(absltest.TestCase):

  def test_a_toy_head_task_and_evaluator_train_and_evaluate(self):
    _register(HEADS, "toy_like", LikeBrierHead, self)
    _register(TASKS, "toy_pair", TwoProjections, self)
    _register(EVALUATORS, "toy_count", CatalogSize, self)

    def configure(c):
      c.model.heads = ("click", "toy_like")
      c.model.tasks = ("toy_pair",)
      c.train.loss_weights.update(toy_like=0.5, toy_pair=0.2)
      c.evals.toy = dict(type="toy_count", prefix="toy")
    workdir = tempfile.mkdtemp()
    m = experiment.train(_smoke(configure), workdir)
    for key in ("test/cold/toy_brier", "test/all/auc", "toy_pair/all/mrr", "toy/cold_videos"):
      self.assertIn(key, m)
    self.assertBetween(m["test/cold/toy_brier"], 0.0, 1.0)
    self.assertBetween(m["toy_pair/all/mrr"], 0.0, 1.0)
    self.assertGreater(m["toy/cold_videos"], 0)
    with open(os.path.join(workdir, "eval", "metrics.json")) as f:
      self.assertIn("toy_pair/all/count", json.load(f))

  def test_a_toy_trainer_reuses_checkpoints_resume_and_the_nan_halt(self):
    _register(TRAINERS, "toy_fake", FakeBatchTrainer, self)
    FakeBatchTrainer.started_at.clear()
    workdir = tempfile.mkdtemp()

    def configure(c):
      c.train.trainer = "toy_fake"
    config = _smoke(configure)
    experiment.train(config, workdir)
    self.assertEqual(sorted(os.listdir(os.path.join(workdir, "checkpoints"))), ["2", "4"])
    self.assertTrue(os.listdir(os.path.join(workdir, "tensorboard")))
    config.train.steps = 6
    experiment.train(config, workdir)
    self.assertEqual(FakeBatchTrainer.started_at, [0, 4])  # resumed at the checkpoint's step
    self.assertIn("6", os.listdir(os.path.join(workdir, "checkpoints")))

    with open(os.path.join(workdir, "config.json")) as f:  # recorded at its default
      self.assertEqual(json.load(f)["train"]["trainer_args"], {"seed_offset": 0})
    offset = _smoke(configure)
    offset.train.trainer_args = dict(seed_offset=1000)
    offset_workdir = tempfile.mkdtemp()
    experiment.train(offset, offset_workdir)
    with open(os.path.join(workdir, "eval", "metrics.json")) as f, open(
        os.path.join(offset_workdir, "eval", "metrics.json")) as g:
      self.assertNotEqual(json.load(f)["test/cold/auc"], json.load(g)["test/cold/auc"])
    for bad, message in ((-1, "seed_offset=-1"), ("x", "seed_offset='x'")):
      offset.train.trainer_args = dict(seed_offset=bad)
      with self.assertRaisesRegex(ConfigError, message):
        validate.validate(offset)
    offset.train.trainer_args = dict(seed=3)
    with self.assertRaisesRegex(ConfigError, "train.trainer_args: unknown argument"):
      validate.validate(offset)
    offset.train.trainer_args = dict(seed_offset=1)
    offset.data.batch_size = 7
    with self.assertRaisesRegex(ConfigError, r"data.batch_size=7 .*halves its batches"):
      validate.validate(offset)

    diverging = tempfile.mkdtemp()
    config = _smoke(configure)
    config.train.update(learning_rate=1e30, warmup_steps=0, log_every=100, checkpoint_every=1)
    with self.assertRaisesRegex(runner.NonFiniteLossError, "loss is nan at step 2"):
      experiment.train(config, diverging)
    self.assertEqual(os.listdir(os.path.join(diverging, "checkpoints")), ["1"])

  def test_a_toy_pooling_takes_its_arguments_from_the_config(self):
    _register(POOLINGS, "toy_runs", RunsPooling, self)

    def configure(c):
      c.model.pooling = "toy_runs"
      c.model.pooling_args = dict(runs=3)
    config = _smoke(configure)
    model = recommender.build(config.model, 4, 5, nnx.Rngs(0))
    features = config.model.frame_encoder.features
    self.assertEqual((model.pool.runs, model.pool.out_features), (3, 3 * features))
    workdir = tempfile.mkdtemp()
    m = experiment.train(config, workdir)
    self.assertBetween(m["test/cold/auc"], 0.0, 1.0)
    config.model.pooling_args = dict(runs=0)
    with self.assertRaisesRegex(ConfigError, "model.pooling_args.runs: 0"):
      validate.validate(config)

  def test_a_toy_item_feature_reaches_the_item_tower(self):
    _register(ITEM_FEATURES, "toy_age", PublishAge, self)

    def configure(c):
      c.model.item_features = ("toy_age",)
    config = _smoke(configure)
    self.assertEqual(fixtures.fake_batch(config)["toy_age"].shape, (config.data.batch_size, 1))
    model = recommender.build(config.model, 4, 5, nnx.Rngs(0))
    self.assertIsInstance(model.item_features["toy_age"], PublishAge)
    m = experiment.train(config, tempfile.mkdtemp())
    self.assertBetween(m["test/cold/auc"], 0.0, 1.0)
    config.model.item_features = ("toy_age", "toy_age")
    with self.assertRaisesRegex(ConfigError, "model.item_features"):
      validate.validate(config)

  def test_a_dataset_without_an_oracle_gets_no_oracle_metrics(self):
    _register(datasets.DATASETS, "toy_no_oracle", NoOracleWorld(), self)

    def configure(c):
      c.data.dataset.name = "toy_no_oracle"
    m = experiment.train(_smoke(configure), tempfile.mkdtemp())
    self.assertIn("test/cold/auc", m)
    self.assertFalse([k for k in m if "oracle" in k])
    with_oracle = experiment.train(_smoke(), tempfile.mkdtemp())
    self.assertIn("test/cold/oracle_gain", with_oracle)

# A user's own package: a grey-level clip input and an encoder that reads only it.
OUTSIDE_MODULE = textwrap.dedent("""
    import jax
    from vidrec_jax.data import ops
    from vidrec_jax.models import encoders, layers

    ops.CLIP_OPS.register("toy_grey", ops.ClipOp(
        ops.PIXELS, lambda x, idx, nxt, mask, prep: prep(x[idx]).mean(-1, keepdims=True),
        channels=1))

    @encoders.FRAME_ENCODERS.register("toy_grey")
    class GreyEncoder(encoders.FrameEncoder):
      def __init__(self, *, channels, features, motion, dtype, param_dtype, rngs):
        del motion
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.convs = encoders.conv_stack(1, channels, **kw)
        self.proj = layers.dense(2 * channels[-1], features, ("conv_out", "embed"), **kw)
        self.features = features

      @classmethod
      def clip_inputs(cls, **kwargs):
        return ("toy_grey", "mask")

      def __call__(self, clip, key=None):
        x = clip["toy_grey"]
        b, t = x.shape[:2]
        h = encoders.mean_max(encoders.run_convs(self.convs, x.reshape((b * t,) + x.shape[2:])))
        return self.proj(h).reshape(b, t, -1), {}
""")


class OutsideTheLibraryTest(absltest.TestCase):

  def test_config_imports_bring_an_encoder_with_its_own_clip_input(self):
    name = "toy_outside_parts"
    helpers.outside_module(self, name, OUTSIDE_MODULE)
    from vidrec_jax.data.ops import CLIP_OPS  # pylint: disable=g-import-not-at-top
    from vidrec_jax.models.encoders import FRAME_ENCODERS  # pylint: disable=g-import-not-at-top
    self.addCleanup(FRAME_ENCODERS.unregister, "toy_grey")
    self.addCleanup(CLIP_OPS.unregister, "toy_grey")

    c = _smoke(lambda c: c.model.frame_encoder.update(name="toy_grey"))
    with self.assertRaisesRegex(validate.ConfigError, "unknown frame encoder 'toy_grey'|"
                                "model.frame_encoder.name='toy_grey'"):
      validate.validate(c)  # not imported yet
    c.imports = (name,)
    validate.validate(c)  # imports the module, which registers both parts
    batch = fixtures.fake_batch(c)  # a random batch fakes the new input from its op's declaration
    d = c.data
    self.assertEqual(batch["toy_grey"].shape,
                     (d.batch_size, d.num_frames, d.frame_size, d.frame_size, 1))
    m = experiment.train(c, tempfile.mkdtemp())
    self.assertIn("test/cold/auc", m)
    c.imports = ("toy_no_such_module",)
    with self.assertRaisesRegex(validate.ConfigError, "config.imports: cannot import "
                                "'toy_no_such_module'"):
      validate.validate(c)


class DiscoveryTest(absltest.TestCase):

  def test_a_registry_imports_its_package_modules_on_an_unknown_name(self):
    root = tempfile.mkdtemp()
    pkg = os.path.join(root, "toy_parts_pkg")
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
      f.write("from vidrec_jax.registry import Registry\n"
              "WIDGETS = Registry('widget', package=__name__)\n")
    with open(os.path.join(pkg, "alpha.py"), "w") as f:  # named as its part
      f.write("from toy_parts_pkg import WIDGETS\nWIDGETS.register('alpha', 1)\n")
    with open(os.path.join(pkg, "more.py"), "w") as f:  # another name: found by the full scan
      f.write("from toy_parts_pkg import WIDGETS\nWIDGETS.register('beta', 2)\n")
    sys.path.insert(0, root)
    self.addCleanup(sys.path.remove, root)
    for mod in ("toy_parts_pkg", "toy_parts_pkg.alpha", "toy_parts_pkg.more"):
      self.addCleanup(sys.modules.pop, mod, None)
    import toy_parts_pkg  # pylint: disable=g-import-not-at-top,import-error
    widgets = toy_parts_pkg.WIDGETS
    self.assertIsInstance(widgets, Registry)
    self.assertEqual(widgets.get("alpha"), 1)
    self.assertNotIn("toy_parts_pkg.more", sys.modules)  # the module of its name sufficed
    self.assertEqual(widgets.get("beta"), 2)
    with self.assertRaisesRegex(ValueError, "unknown widget 'gamma'; registered: alpha, beta"):
      widgets.get("gamma")

  def test_library_registries_need_no_import_lists(self):
    # A fresh interpreter: only the registries' own modules imported, every part found.
    import subprocess  # pylint: disable=g-import-not-at-top
    code = ("from vidrec_jax.data.datasets import DATASETS\n"
            "from vidrec_jax.eval.evaluators import EVALUATORS\n"
            "from vidrec_jax.train.trainers import TRAINERS\n"
            "from vidrec_jax.models.model_registry import MODELS\n"
            "from vidrec_jax.models.encoders import FRAME_ENCODERS\n"
            "for r in (DATASETS, EVALUATORS, TRAINERS, MODELS, FRAME_ENCODERS):\n"
            "  print(r.kind + ':' + ','.join(r.names()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=helpers.REPO).stdout
    got = dict(line.split(":") for line in out.split("\n") if line)
    self.assertEqual(got["dataset"], "microlens,movielens_100k,synthetic,video_folder")
    self.assertEqual(got["evaluator"], "full_sort,ranking,retrieval,two_stage")
    self.assertEqual(got["trainer"], "next_item,reinforce,supervised")
    self.assertEqual(got["model"], "policy,sequential,two_tower")
    self.assertEqual(got["frame encoder"], "backbone,conv,two_stream")


if __name__ == "__main__":
  absltest.main()
