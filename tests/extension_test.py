"""Adding parts from a test file alone, without editing any library file: a toy head, a toy
retrieval task and a toy evaluator train and evaluate through the real entry point; a toy
trainer reuses the shared loop's checkpointing, resume and NaN halting; a toy dataset without
an oracle gets no oracle metrics."""

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from tests import helpers
from tests.train import fixtures
from vidrec_jax import experiment
from vidrec_jax.data import datasets
from vidrec_jax.data.datasets import synthetic
from vidrec_jax.eval import metrics as M
from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.eval.evaluators import Evaluator
from vidrec_jax.models import layers
from vidrec_jax.models.heads import HEADS
from vidrec_jax.models.heads import Head
from vidrec_jax.models.tasks import TASKS
from vidrec_jax.models.tasks import RetrievalTask
from vidrec_jax.models.tasks import logit_scale
from vidrec_jax.models.text import l2_normalize
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
  """Trains the recommender on fixture batches (seeded by step) with the supervised step."""

  started_at = []

  def batches(self, start_step, saved_position):
    FakeBatchTrainer.started_at.append(start_step)
    step = start_step
    while True:
      step += 1
      yield fixtures.fake_batch(self.config, seed=step)

  def step_fn(self):
    s = self.setup
    return jax.jit(lambda state, batch: steps.train_step(s, state, batch),
                   in_shardings=(s.state_shardings, None), out_shardings=(s.state_shardings, None))

  def observe(self, batch):
    return float(batch["weight"].sum())


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

    diverging = tempfile.mkdtemp()
    config = _smoke(configure)
    config.train.update(learning_rate=1e30, warmup_steps=0, log_every=100, checkpoint_every=1)
    with self.assertRaisesRegex(runner.NonFiniteLossError, "loss is nan at step 2"):
      experiment.train(config, diverging)
    self.assertEqual(os.listdir(os.path.join(diverging, "checkpoints")), ["1"])

  def test_a_dataset_without_an_oracle_gets_no_oracle_metrics(self):
    _register(datasets.DATASETS, "toy_no_oracle", NoOracleWorld(), self)

    def configure(c):
      c.data.dataset.name = "toy_no_oracle"
    m = experiment.train(_smoke(configure), tempfile.mkdtemp())
    self.assertIn("test/cold/auc", m)
    self.assertFalse([k for k in m if "oracle" in k])
    with_oracle = experiment.train(_smoke(), tempfile.mkdtemp())
    self.assertIn("test/cold/oracle_gain", with_oracle)


if __name__ == "__main__":
  absltest.main()
