"""The full_sort evaluator's bookkeeping: which queries a periodic and a final evaluation rank,
and the cold, warm and new target groups (the ranking itself is tested through training in
tests/train/sequential_test.py and tests/data/microlens_test.py)."""

import types

import numpy as np
from absl.testing import absltest

from vidrec_jax.eval.evaluators import full_sort


def _evaluator(periodic_queries: int, n: int = 40) -> full_sort.FullSortEvaluator:
  ev = full_sort.FullSortEvaluator.__new__(full_sort.FullSortEvaluator)
  ev.splits, ev.ks, ev.periodic_queries = ("valid", "test"), (10,), periodic_queries
  targets = np.arange(n) % 20  # videos 0..19; 0..9 have training interactions
  ev._queries = {s: {"target": targets, "history": np.zeros((n, 3), np.int64)}
                 for s in ev.splits}
  cold = np.zeros(20, bool)
  cold[15:] = True
  ev.ctx = types.SimpleNamespace(dataset=types.SimpleNamespace(
      catalog=types.SimpleNamespace(cold=cold)), train_video_ids=np.array([0, 1, 2, 3, 4, 5, 6,
                                                                            7, 8, 9, 9]))
  # Stands in for the model: a query's rank is its row number + 1, so a sample shows.
  ev.ranked = []

  def ranks(params, split, rows):
    del params
    ev.ranked.append((split, rows.copy()))
    return rows + 1, rows + 1
  ev.ranks = ranks
  return ev


class FullSortTest(absltest.TestCase):

  def test_periodic_evaluations_rank_one_fixed_sample_the_final_one_every_query(self):
    ev = _evaluator(periodic_queries=8)
    enc = types.SimpleNamespace(params=None)
    first = ev.evaluate(enc, ("valid",))
    second = ev.evaluate(enc, ("valid",))
    self.assertEqual(first["valid/count"], 8)
    self.assertNotIn("test/count", first)
    np.testing.assert_array_equal(ev.ranked[0][1], ev.ranked[1][1])  # the same sample
    self.assertEqual(len(set(ev.ranked[0][1].tolist())), 8)
    drop = "valid/full_sort_seconds"
    self.assertEqual({k: v for k, v in first.items() if k != drop},
                     {k: v for k, v in second.items() if k != drop})
    final = ev.evaluate(enc, None)
    self.assertEqual(final["valid/count"], 40)
    self.assertEqual(final["test/count"], 40)
    np.testing.assert_array_equal(ev.ranked[-1][1], np.arange(40))
    # The sampled metrics are those of the sampled rows' ranks.
    rows = ev.ranked[0][1]
    self.assertAlmostEqual(first["valid/hr@10"], float(np.mean(rows + 1 <= 10)))

  def test_zero_or_more_than_the_split_ranks_every_query(self):
    for k in (0, 40, 100):
      ev = _evaluator(periodic_queries=k)
      self.assertEqual(ev.evaluate(types.SimpleNamespace(params=None), ("valid",))[
          "valid/count"], 40)

  def test_cold_warm_and_new_targets(self):
    out = _evaluator(0).evaluate(types.SimpleNamespace(params=None), None)
    for prefix in ("test", "test/masked"):
      self.assertEqual(out[f"{prefix}/cold/count"], 10)  # videos 15..19, twice each
      self.assertEqual(out[f"{prefix}/warm/count"], 30)
      self.assertEqual(out[f"{prefix}/new/count"], 20)  # videos 10..19: no training click
    # New targets are rows 10..19 and 30..39: ranks 11..20 and 31..40, none in the top 10.
    self.assertEqual(out["test/new/hr@10"], 0.0)
    self.assertEqual(out["test/warm/hr@10"], 10 / 30)


if __name__ == "__main__":
  absltest.main()
