"""Metrics against brute-force definitions."""

import itertools

import numpy as np
from absl.testing import absltest

from vidrec_jax import metrics as M


def brute_auc(y, s):
  pos = [a for a, l in zip(s, y) if l]
  neg = [a for a, l in zip(s, y) if not l]
  wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
  return wins / (len(pos) * len(neg))


class MetricsTest(absltest.TestCase):

  def test_auc_matches_pair_counting_with_ties(self):
    rng = np.random.default_rng(0)
    y = rng.random(57) < 0.3
    s = np.round(rng.random(57), 1)  # many ties
    self.assertAlmostEqual(M.auc(y, s), brute_auc(y, s), places=12)

  def test_auc_one_class_is_nan(self):
    self.assertTrue(np.isnan(M.auc(np.ones(4), np.arange(4))))

  def test_group_auc_weights_by_group_size(self):
    g = np.array([0, 0, 0, 1, 1, 2])
    y = np.array([1, 0, 0, 0, 1, 1])
    s = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.3])
    # group 0: auc 1 (3 items), group 1: auc 0 (2 items), group 2 has one class.
    self.assertAlmostEqual(M.group_auc(g, y, s), 3 / 5)

  def test_grouped_metrics_with_interleaved_groups_match_each_group_alone(self):
    # Users' impressions arrive interleaved and unsorted (as an eval split holds them); each
    # group's metric must be the one of its rows alone, in their input order.
    rng = np.random.default_rng(3)
    g = rng.choice(np.array([907, 3, 55, 12, 400, 8]), 300)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300), 1)  # ties, so the order inside a group matters to nothing
    aucs, sizes, ndcgs = [], [], []
    for u in (3, 8, 12, 55, 400, 907):
      sel = g == u
      aucs.append(brute_auc(y[sel], s[sel]))
      sizes.append(sel.sum())
      ndcgs.append(M.ndcg_at_k(np.zeros(sel.sum(), int), y[sel], s[sel], 5))
    self.assertAlmostEqual(M.group_auc(g, y, s), np.average(aucs, weights=sizes), places=12)
    self.assertAlmostEqual(M.ndcg_at_k(g, y, s, 5), np.mean(ndcgs), places=12)
    self.assertTrue(np.isnan(M.group_auc(np.zeros(0, int), np.zeros(0), np.zeros(0))))
    self.assertTrue(np.isnan(M.ndcg_at_k(np.zeros(0, int), np.zeros(0), np.zeros(0), 5)))

  def test_ndcg(self):
    g = np.array([0, 0, 0, 1, 1])
    y = np.array([0, 1, 0, 0, 0])
    s = np.array([0.9, 0.5, 0.1, 0.3, 0.2])
    # user 0: the positive is ranked 2nd -> 1/log2(3); user 1 has no positive and is skipped.
    self.assertAlmostEqual(M.ndcg_at_k(g, y, s, 10), 1 / np.log2(3))
    self.assertAlmostEqual(M.ndcg_at_k(g, y, s, 1), 0.0)

  def test_ndcg_with_ties_averages_the_tied_positions(self):
    g = np.zeros(3, int)
    y = np.array([1, 0, 0])
    # The positive ties with a negative at the top: it is 1st or 2nd with equal chance.
    s = np.array([0.5, 0.5, 0.1])
    self.assertAlmostEqual(M.ndcg_at_k(g, y, s, 10), (1 + 1 / np.log2(3)) / 2)
    self.assertAlmostEqual(M.ndcg_at_k(g, y, s, 1), 0.5)  # the 2nd position is past k=1
    # The input order of tied items does not matter.
    self.assertAlmostEqual(M.ndcg_at_k(g, y[[1, 0, 2]], s[[1, 0, 2]], 10),
                           M.ndcg_at_k(g, y, s, 10))
    # All tied: every item gets the mean discount of the k positions.
    y2, s2 = np.array([1, 1, 0, 0]), np.zeros(4)
    disc = 1 / np.log2(np.arange(2, 6))
    self.assertAlmostEqual(M.ndcg_at_k(np.zeros(4, int), y2, s2, 4),
                           2 * disc.mean() / disc[:2].sum())

  def test_regression_and_gain(self):
    self.assertAlmostEqual(M.mse(np.array([1.0, 3.0]), np.array([2.0, 1.0])), 2.5)
    self.assertAlmostEqual(M.mae(np.array([1.0, 3.0]), np.array([2.0, 1.0])), 1.5)
    self.assertAlmostEqual(M.oracle_gain(0.7, 0.9), 0.5)
    self.assertAlmostEqual(M.logloss(np.array([1, 0]), np.array([0.5, 0.5])), np.log(2))

  def test_retrieval_ranks_and_metrics(self):
    gallery = np.eye(4)
    queries = np.array([[1.0, 0, 0, 0],      # own target (0) first
                        [0, 0, 1.0, 0.5],    # target 1 scores 0: behind 2 and 3 -> rank 4
                        [0, 0.2, 0.9, 0],    # target 2 first
                        [0, 0, 0.6, 0.4]])   # target 3 second
    ranks = M.retrieval_ranks(queries, gallery, np.arange(4))
    np.testing.assert_array_equal(ranks, [1, 4, 1, 2])
    np.testing.assert_array_equal(M.retrieval_ranks(queries, gallery, np.arange(4), chunk=3),
                                  ranks)
    m = M.retrieval_metrics(ranks, ks=(1, 2))
    self.assertAlmostEqual(m["recall@1"], 0.5)
    self.assertAlmostEqual(m["recall@2"], 0.75)
    self.assertAlmostEqual(m["mrr"], (1 + 1 / 4 + 1 + 1 / 2) / 4)

  def test_retrieval_ties_count_against_the_target(self):
    collapsed = np.ones((3, 2))  # every embedding the same: no better than last
    ranks = M.retrieval_ranks(collapsed, collapsed, np.arange(3))
    np.testing.assert_array_equal(ranks, [3, 3, 3])
    self.assertTrue(np.isnan(M.retrieval_metrics(np.array([]))["mrr"]))

  def test_single_target_rank_metrics_by_hand(self):
    ranks = np.array([1, 3, 11, 4])
    self.assertEqual(M.hit_rate(ranks, 3), 0.5)
    self.assertEqual(M.hit_rate(ranks, 10), 0.75)
    self.assertAlmostEqual(M.ndcg_of_ranks(ranks, 3), (1 + 1 / np.log2(4)) / 4)
    self.assertAlmostEqual(M.mrr(ranks), (1 + 1 / 3 + 1 / 11 + 1 / 4) / 4)
    self.assertAlmostEqual(M.mrr(ranks, 3), (1 + 1 / 3) / 4)
    for f in (M.hit_rate, M.ndcg_of_ranks, M.mrr):
      self.assertTrue(np.isnan(f(np.zeros(0, np.int64), 3)))

  def test_one_relevant_item_makes_list_and_rank_metrics_agree(self):
    # Recall@k of lists with one relevant item is HR@k of its rank, and so for NDCG@k.
    rng = np.random.default_rng(3)
    ranked = np.stack([rng.permutation(13) for _ in range(9)])
    targets = rng.integers(0, 13, size=9)
    ranks = np.argmax(ranked == targets[:, None], axis=1) + 1
    relevant = [{int(t)} for t in targets]
    for k in (1, 4, 13):
      self.assertAlmostEqual(np.mean(M.recall_of_lists(ranked, relevant, k)),
                             M.hit_rate(ranks, k))
      self.assertAlmostEqual(np.mean(M.ndcg_of_lists(ranked, relevant, k)),
                             M.ndcg_of_ranks(ranks, k))

  def test_list_recall_and_ndcg_by_hand(self):
    ranked = np.asarray([[5, 1, 7, 2], [9, 8, 4, 3], [0, 1, 2, 3]])
    relevant = [{1, 2}, {3}, set()]
    np.testing.assert_allclose(M.recall_of_lists(ranked, relevant, 2), [0.5, 0.0, np.nan])
    np.testing.assert_allclose(M.recall_of_lists(ranked, relevant, 4), [1.0, 1.0, np.nan])
    # User 0: hits at ranks 2 and 4 of 4; ideal: ranks 1 and 2.
    ideal0 = 1 + 1 / np.log2(3)
    got0 = 1 / np.log2(3) + 1 / np.log2(5)
    ndcg = M.ndcg_of_lists(ranked, relevant, 4)
    np.testing.assert_allclose(ndcg, [got0 / ideal0, (1 / np.log2(5)) / 1.0, np.nan])


if __name__ == "__main__":
  absltest.main()
