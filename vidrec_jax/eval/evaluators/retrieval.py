"""`retrieval`: every active retrieval task's own evaluation over the whole catalog (see
models/tasks.py), e.g. `text_match/cold/recall@10`, `visual_query/all/mrr`."""

from __future__ import annotations

from vidrec_jax.eval.evaluators import EVALUATORS
from vidrec_jax.eval.evaluators import Evaluator
from vidrec_jax.eval.evaluators import table
from vidrec_jax.models.tasks import CatalogView
from vidrec_jax.models.tasks import TASKS

COLUMNS = ("count", "recall@1", "recall@5", "recall@10", "mrr")


@EVALUATORS.register("retrieval")
class RetrievalEvaluator(Evaluator):
  """Runs each task of `model.tasks` on the catalog's encodings.

  Args:
    query_seed: seeds the random frames of second views (e.g. the visual-query queries).
  """

  def __init__(self, ctx, *, query_seed: int):
    super().__init__(ctx)
    self.query_seed = query_seed
    self.tasks = tuple(ctx.run.model.tasks)

  def evaluate(self, enc, splits):
    del splits  # the tasks evaluate over the catalog, not over a split's impressions
    out = {}
    cold = self.ctx.dataset.catalog.cold
    for name in self.tasks:
      def query_view(name=name):
        emb, ok = enc.view(self.query_seed)
        return emb[name], ok
      view = CatalogView(emb=enc.task_embeddings[name], decodable=enc.decodable, cold=cold,
                         query_view=query_view)
      out.update({f"{name}/{k}": v for k, v in TASKS.get(name).evaluate(view).items()})
    return out

  def table(self, metrics):
    rows = sorted({k.rsplit("/", 1)[0] for k in metrics
                   if k.split("/")[0] in self.tasks and k.count("/") == 2})
    return table("task/queries", rows, COLUMNS, metrics) if rows else []
