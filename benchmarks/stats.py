"""The statistics every benchmark reports by (BENCHMARKS.md, "Selection protocol"): mean ±
sample SD (ddof 1) with n, and a difference called a win only when a Welch (independent runs)
or paired (runs that share seeds or worlds) t-test gives p < 0.05; otherwise "level within
noise"."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as sp_stats

ALPHA = 0.05


def summary(values: Sequence[float]) -> tuple[float, float, int]:
  """(mean, sample SD with ddof 1 (nan for n < 2), n)."""
  v = np.asarray(values, np.float64)
  if v.size == 0:
    raise ValueError("no values to summarise")
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan"), int(v.size)


def fmt(values: Sequence[float], digits: int = 3) -> str:
  """'mean ± sd (n=N)'; a single value prints as 'value (n=1)'."""
  mean, sd, n = summary(values)
  if n < 2:
    return f"{mean:.{digits}f} (n=1)"
  return f"{mean:.{digits}f} ± {sd:.{digits}f} (n={n})"


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
  """Welch's t-test of mean(a) - mean(b): (t, two-sided p); nan where either has n < 2."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size < 2 or b.size < 2:
    return float("nan"), float("nan")
  t, p = sp_stats.ttest_ind(a, b, equal_var=False)
  return float(t), float(p)


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
  """Paired t-test of a - b over matched seeds or worlds: (t, two-sided p)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"a paired test needs matched runs; got {a.size} and {b.size}")
  if a.size < 2:
    return float("nan"), float("nan")
  d = a - b
  if np.all(d == d[0]):  # no spread: the test is undefined unless the runs are identical
    return (0.0, 1.0) if d[0] == 0 else (float(np.sign(d[0]) * np.inf), 0.0)
  t, p = sp_stats.ttest_rel(a, b)
  return float(t), float(p)


def verdict(a: Sequence[float], b: Sequence[float], names: tuple[str, str] = ("a", "b"),
            test: str = "welch", higher_is_better: bool = True) -> str:
  """One line: the difference, the test's p, and 'X ahead' only when p < 0.05, else 'level
  within noise'."""
  if test not in ("welch", "paired"):
    raise ValueError(f"unknown test {test!r}; allowed: welch, paired")
  t, p = (welch if test == "welch" else paired)(a, b)
  diff = float(np.mean(a) - np.mean(b))
  if np.isfinite(p) and p < ALPHA:
    better = names[0] if (diff > 0) == higher_is_better else names[1]
    word = f"{better} ahead"
  else:
    word = "level within noise"
  return f"{names[0]} - {names[1]} = {diff:+.4f} ({test} t = {t:.2f}, p = {p:.3g}): {word}"


def best_by_valid(valid: dict[str, Sequence[float]], higher_is_better: bool = True) -> str:
  """The variant with the best mean valid figure: the only way a benchmark picks a 'best'."""
  if not valid:
    raise ValueError("no variants to choose from")
  sign = 1.0 if higher_is_better else -1.0
  return max(valid, key=lambda k: sign * float(np.mean(valid[k])))
