"""Cleaning of free text (titles): missing values, bytes that are not valid UTF-8, counts.

`decode_utf8` is the one place bytes become text: invalid sequences become U+FFFD and are
counted. `clean_texts` turns None/NaN into "" and bytes into str for a tokenizer, counting what
it did in a `TextStats`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

_REPLACEMENT_UTF8 = "\ufffd".encode()


@dataclasses.dataclass
class TextStats:
  """What cleaning and tokenising one call's texts did."""

  count: int = 0
  missing: int = 0  # None (or NaN) titles, encoded as ""
  empty: int = 0  # "" after cleaning, missing ones included
  decoded: int = 0  # bytes inputs decoded as UTF-8
  replaced: int = 0  # invalid UTF-8 sequences replaced by U+FFFD, over all bytes inputs
  truncated: int = 0  # texts longer than the maximum length in tokens

  def summary(self) -> str:
    return (f"{self.count} texts: {self.missing} missing, {self.empty} empty, {self.decoded} "
            f"bytes decoded with {self.replaced} invalid UTF-8 sequences replaced, "
            f"{self.truncated} truncated")


def decode_utf8(raw: bytes) -> tuple[str, int]:
  """(text, number of invalid UTF-8 sequences replaced by U+FFFD)."""
  text = raw.decode("utf-8", errors="replace")
  # A valid encoded U+FFFD in the input is not a replacement.
  return text, text.count("\ufffd") - raw.count(_REPLACEMENT_UTF8)


def clean_texts(texts: Sequence[Any], stats: TextStats | None = None
                ) -> tuple[list[str], TextStats]:
  """Strings for the tokenizer: None/NaN -> "", bytes -> UTF-8 with replacement; counted.

  Raises:
    TypeError: an element is neither str, bytes, None nor NaN (names its index).
  """
  if isinstance(texts, (str, bytes)):
    raise TypeError("expected a sequence of texts, got a single "
                    f"{type(texts).__name__}; wrap it in a list")
  stats = stats or TextStats()
  out = []
  for i, t in enumerate(texts):
    if t is None or (isinstance(t, float) and math.isnan(t)):
      stats.missing += 1
      t = ""
    elif isinstance(t, (bytes, bytearray, memoryview)):
      t, replaced = decode_utf8(bytes(t))
      stats.decoded += 1
      stats.replaced += replaced
    elif isinstance(t, np.str_):
      t = str(t)
    elif not isinstance(t, str):
      raise TypeError(f"text {i} is a {type(t).__name__}, expected str, bytes or None")
    stats.empty += not t
    out.append(t)
  stats.count = len(out)
  return out, stats
