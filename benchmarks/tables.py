"""Table pieces the benchmark scripts share, by the selection protocol (stats.py; BENCHMARKS.md,
"Selection protocol"): cells of 'mean ± sd (n=N)' (sample SD, ddof 1), the valid figure beside
the test figure of every metric, and the verdict of a variant against its baseline on both
splits (paired over the runs that share a world and seed, Welch otherwise).

Benchmarks import it by plain name (`import tables`), as they import stats and main_runner.
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np

import stats

SPLITS = ("valid", "test")  # the order of the columns: valid first, test beside it
OUTCOMES = ("ahead", "level", "behind")  # of a variant against its baseline


def at_split(key: str, split: str) -> str:
  """The metric `key` ('test/cold/auc', 'valid/cold/auc' or 'cold/auc') of `split`."""
  head, _, rest = key.partition("/")
  return f"{split}/{rest if head in SPLITS else key}"


def finite(values: Iterable) -> list[float]:
  """The values that are numbers (None and nan left out: a run without the metric)."""
  return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def cell(values: Iterable, digits: int = 3, empty: str = "") -> str:
  """stats.fmt of the finite values ('mean ± sd (n=N)'), `empty` when there are none."""
  vals = finite(values)
  return stats.fmt(vals, digits) if vals else empty


def metric(runs: Iterable[Mapping], key: str) -> list[float]:
  """`key` of every run (metrics dicts) that has it."""
  return finite(r.get(key) for r in runs)


def split_header(names: Sequence[str]) -> list[str]:
  """Column titles 'NAME valid', 'NAME test' for each name."""
  return [f"{n} {s}" for n in names for s in SPLITS]


def split_cells(runs: Sequence[Mapping], key: str, digits: int = 3, empty: str = "") -> list[str]:
  """The valid and the test cell of metric `key` over runs (metrics dicts)."""
  return [cell(metric(runs, at_split(key, s)), digits, empty) for s in SPLITS]


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
  """A markdown table's lines."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(r) + " |" for r in rows]


def outcome(a: Sequence[float], b: Sequence[float], test: str = "paired",
            higher_is_better: bool = True) -> str:
  """'ahead' when a beats b at p < stats.ALPHA, 'behind' when b beats a, else 'level' (as
  stats.verdict words it)."""
  _, p = (stats.paired if test == "paired" else stats.welch)(a, b)
  if not (np.isfinite(p) and p < stats.ALPHA):
    return "level"
  diff = float(np.mean(a) - np.mean(b))
  return "ahead" if (diff > 0) == higher_is_better else "behind"


def judge(a: Sequence[float], b: Sequence[float], names: tuple[str, str], test: str = "paired",
          higher_is_better: bool = True) -> tuple[str, str]:
  """(stats.verdict's line, outcome) of a against b; ('n < 2', 'level') with too few runs."""
  if len(a) < 2 or len(b) < 2:
    return f"n = {min(len(a), len(b))} < 2: no test", "level"
  return (stats.verdict(a, b, names, test, higher_is_better),
          outcome(a, b, test, higher_is_better))


def matched(a: Mapping[Hashable, Mapping], b: Mapping[Hashable, Mapping],
            key: str) -> tuple[list, list[float], list[float]]:
  """The run keys (e.g. (world, seed)) where both a and b have metric `key`, and the two lists of
  values over them, in a's order: the pairs of a paired test."""
  keys = [k for k in a if k in b and finite([a[k].get(key)]) and finite([b[k].get(key)])]
  return keys, [float(a[k][key]) for k in keys], [float(b[k][key]) for k in keys]


def compare(a: Mapping[Hashable, Mapping], b: Mapping[Hashable, Mapping], key: str,
            names: tuple[str, str], higher_is_better: bool = True,
            test: str = "paired") -> dict[str, tuple[str, str]]:
  """split -> judge() of runs a against runs b (dicts run key -> metrics) on metric `key` of that
  split: paired over the run keys both have, or Welch over all runs of each."""
  out = {}
  for split in SPLITS:
    k = at_split(key, split)
    if test == "paired":
      _, va, vb = matched(a, b, k)
    else:
      va, vb = metric(a.values(), k), metric(b.values(), k)
    out[split] = judge(va, vb, names, test, higher_is_better)
  return out


def verdict_table(title: str, comparisons: Iterable[tuple]) -> list[str]:
  """A blank line, `title`, and a table of each comparison's verdicts, valid beside test;
  comparisons are (label, runs a, runs b, metric key, (name a, name b)) as compare() takes them
  (higher is better, paired). No lines when there is no comparison."""
  rows = []
  for label, a, b, key, names in comparisons:
    res = compare(a, b, key, names)
    rows.append([label, res["valid"][0], res["test"][0]])
  return ["", title, ""] + markdown(["comparison", "valid", "test"], rows) if rows else []


def holds(result: str, expected: str) -> str:
  """The 'holds' cell of an expectation from the test outcome: 'lifts' holds only when the
  variant is ahead; 'does not hurt' unless it is behind."""
  if expected == "lifts":
    return {"ahead": "yes", "level": "no (level within noise)", "behind": "NO (behind)"}[result]
  if expected == "does not hurt":
    return {"ahead": "yes (ahead)", "level": "yes (level)", "behind": "NO (behind)"}[result]
  raise ValueError(f"unknown expectation {expected!r}; allowed: lifts, does not hurt")

