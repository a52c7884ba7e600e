"""Sentences/s of the Flax all-MiniLM-L6-v2 encoder vs the sentence-transformers (torch)
reference on this CPU, the same texts and batch size, measured in one run.

  python benchmarks/text_speed.py [--batch_size=64] [--repeats=3]

Two workloads: short titles (the 1,682 MovieLens-100K-length titles are approximated by the
180 real titles in tests/models/data, repeated to 1,800) and long texts (each ~180 WordPiece
tokens: 30 titles joined). Both sides get a warm-up pass first (jit compilation for Flax);
the best of `repeats` timed passes is reported. Needs the test extras (torch,
sentence-transformers) for the reference.
"""

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from vidrec_jax.models import text  # noqa: E402

_BATCH = flags.DEFINE_integer("batch_size", 64, "Sentences per forward pass (both sides).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes per workload (best reported).")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def titles() -> list[str]:
  path = os.path.join(REPO, "tests", "models", "data", "movielens_titles.txt")
  with open(path, encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f if not line.startswith("#")]


def best_rate(fn, texts: list[str], repeats: int) -> float:
  fn(texts)  # warm-up
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    fn(texts)
    best = min(best, time.perf_counter() - t)
  return len(texts) / best


def main(_):
  import torch  # pylint: disable=g-import-not-at-top
  from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top
  base = titles()
  short = (base * 10)[:1800]
  long = [" ; ".join(base[i:i + 30]) for i in range(0, 150, 5)] * 4
  ours = text.pretrained_sentence_encoder("all-MiniLM-L6-v2", batch_size=_BATCH.value)
  ref = SentenceTransformer(text.model_dir("all-MiniLM-L6-v2"), device="cpu")
  n_long = int(ours.tokenizer([long[0]])[0]["attention_mask"].sum())
  print(f"torch threads: {torch.get_num_threads()}, batch {_BATCH.value}")
  print("| workload | texts | Flax sentences/s | torch sentences/s | Flax / torch |")
  print("|---|---|---|---|---|")
  for name, texts in (("short titles", short), (f"long texts (~{n_long} tokens)", long)):
    flax_rate = best_rate(ours, texts, _REPEATS.value)
    torch_rate = best_rate(lambda t: ref.encode(t, batch_size=_BATCH.value,
                                                convert_to_numpy=True), texts, _REPEATS.value)
    print(f"| {name} | {len(texts)} | {flax_rate:.0f} | {torch_rate:.0f} | "
          f"{flax_rate / torch_rate:.2f}x |", flush=True)


if __name__ == "__main__":
  app.run(main)
