"""benchmarks/tables.py: valid beside test, cells of stats.fmt, verdicts paired over the run keys
both sides have, and expectations that hold only as the protocol allows."""

import os
import sys

from absl.testing import absltest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import tables  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


def runs(values: dict, offset: float) -> dict:
  """Run key -> metrics with valid and test cold/auc."""
  return {k: {"valid/cold/auc": v + offset, "test/cold/auc": v + offset + 0.001}
          for k, v in values.items()}


class TablesTest(absltest.TestCase):

  def test_at_split(self):
    self.assertEqual(tables.at_split("test/cold/auc", "valid"), "valid/cold/auc")
    self.assertEqual(tables.at_split("valid/cold/auc", "test"), "test/cold/auc")
    self.assertEqual(tables.at_split("cold/oracle_gain", "valid"), "valid/cold/oracle_gain")

  def test_cells_leave_out_missing_values(self):
    self.assertEqual(tables.cell([0.5, None, float("nan"), 0.7]), "0.600 ± 0.141 (n=2)")
    self.assertEqual(tables.cell([], empty="-"), "-")
    self.assertEqual(tables.split_cells([{"valid/x": 0.5, "test/x": 0.4}, {"valid/x": 0.7}], "x"),
                     ["0.600 ± 0.141 (n=2)", "0.400 (n=1)"])
    self.assertEqual(tables.split_header(["gain"]), ["gain valid", "gain test"])
    self.assertEqual(tables.markdown(["a", "b"], [["1", "2"]]),
                     ["| a | b |", "|---|---|", "| 1 | 2 |"])

  def test_compare_pairs_by_run_key(self):
    # Worlds differ a lot; the variant is ahead by about 0.01 on each, and one run of the
    # baseline (world 9) has no partner: it is left out of the paired test.
    base = {"0": 0.5, "1": 0.7, "2": 0.9, "3": 0.6}
    variant = runs({k: v + d for (k, v), d in zip(base.items(), (0.011, 0.009, 0.010, 0.012))},
                   0.0)
    res = tables.compare(variant, runs(dict(base, **{"9": 0.1}), 0.0), "cold/auc", ("v", "b"))
    self.assertEqual(res["valid"][1], "ahead")
    self.assertEqual(res["test"][1], "ahead")
    self.assertIn("paired", res["test"][0])
    self.assertIn("v ahead", res["test"][0])
    welch = tables.compare(variant, runs(base, 0.0), "cold/auc", ("v", "b"), test="welch")
    self.assertEqual(welch["test"][1], "level")
    lower = tables.compare(variant, runs(base, 0.0), "cold/auc", ("v", "b"),
                           higher_is_better=False)
    self.assertEqual(lower["test"][1], "behind")
    few = tables.compare(runs({"0": 0.5}, 0.0), runs({"0": 0.4}, 0.0), "cold/auc", ("v", "b"))
    self.assertEqual(few["test"], ("n = 1 < 2: no test", "level"))

  def test_verdict_table(self):
    base = {"0": 0.5, "1": 0.7, "2": 0.9}
    lines = tables.verdict_table("title", [("v vs b", runs(base, 0.0), runs(base, 0.0),
                                            "cold/auc", ("v", "b"))])
    self.assertEqual(lines[:4], ["", "title", "", "| comparison | valid | test |"])
    self.assertIn("| v vs b | v - b = +0.0000", lines[5])
    self.assertIn("level within noise", lines[5])
    self.assertEqual(tables.verdict_table("title", []), [])

  def test_holds(self):
    self.assertEqual(tables.holds("ahead", "lifts"), "yes")
    self.assertTrue(tables.holds("level", "lifts").startswith("no"))
    self.assertTrue(tables.holds("level", "does not hurt").startswith("yes"))
    self.assertTrue(tables.holds("behind", "does not hurt").startswith("NO"))
    with self.assertRaisesRegex(ValueError, "unknown expectation"):
      tables.holds("ahead", "matches")


if __name__ == "__main__":
  absltest.main()
