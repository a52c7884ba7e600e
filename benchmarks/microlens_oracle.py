"""The ceiling of a synthetic world written in MicroLens layout, under MicroLens' protocol: how
well next-item rankers that know the world's truth do, beside the popularity and random rankings.

  python benchmarks/microlens_oracle.py --release=ROOT/release/data/microlens

The release must be one the synthetic world wrote (`--mode=generate
--config.data.dataset.layout=microlens`): its `world_config.json` regenerates the world (a
deterministic function of those arguments), whose click logit `World.oracle_logit` is known
for every (user, video) pair. The protocol is the one the `microlens` dataset and the
`full_sort` evaluator apply, with their own functions: the pairs read as shipped, users with
fewer than `--min_interactions` clicks dropped, each user's last `--keep_last` kept,
leave-one-out by time; each user's valid (test) target ranked among every item of the
catalog with the items of the history before it removed (the history-masked full sort).
Scores tied exactly (the content ranker's: every video with the same factors scores the same)
are broken by a fixed random order, as a model's tiny differences would; other ties count
against the target, as the evaluator counts them.

Rankers:
  oracle      the chance that a video is the user's next click, up to a constant: how often
              it is in a slate shown to the user (uniform, or with `exposure_taste` the feed's
              `slate_size` draws from exp(exposure_taste x the persona's affinity)) times the
              true click probability (user taste x video factors, plus the video's bias): the
              Bayes ranking given the time of the click (before or after the cold videos'
              publication, when a share of every slate shows them), but for the repeats within
              a slate that the feed redraws uniformly
  content     the same without the video's bias: the best a model that sees only the content
              (not which video) does
  popularity  training clicks of each item (the best any user-blind model does here)
  random      uniform: HR@k = k / candidates, in expectation (computed, not drawn)

With slates drawn uniformly from the catalog, the chance that a video is the next click is its
click probability over the sum of everyone else's, and even the oracle's top-k holds only a
small share of it; a feed concentrates it. That share is what the table measures.
"""

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vidrec_jax.data import world as world_lib  # pylint: disable=g-import-not-at-top
from vidrec_jax.data.datasets import logs  # pylint: disable=g-import-not-at-top
from vidrec_jax.data.world_config import WorldConfig  # pylint: disable=g-import-not-at-top


def read_pairs(folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(user, item, timestamp) of the release's pairs file: 0-based world ids."""
  name = [f for f in os.listdir(folder) if f.endswith("_pairs.csv")]
  if len(name) != 1:
    raise SystemExit(f"--release: {folder} holds {len(name)} *_pairs.csv files; allowed: one")
  a = np.loadtxt(os.path.join(folder, name[0]), delimiter=",", skiprows=1, dtype=np.int64,
                 ndmin=2)
  return a[:, 0] - 1, a[:, 1] - 1, a[:, 2]


def queries(user, item, time, min_interactions, keep_last):
  """Per split (valid, test): (users, targets, the targets' times, histories as a list of
  arrays), after the dataset's filtering and leave-one-out split; and the training clicks of
  each item."""
  keep = logs.user_filter(user, time, min_interactions, keep_last)
  user, item, time = user[keep], item[keep], time[keep]
  order = np.argsort(time, kind="stable")
  user, item, time = user[order], item[order], time[order]
  split = logs.leave_one_out(user)
  out = {}
  by_user = {}
  for u, i, t, s in zip(user.tolist(), item.tolist(), time.tolist(), split.tolist()):
    by_user.setdefault(u, []).append((i, t, s))
  for k, name in ((1, "valid"), (2, "test")):
    us, ts, times, hs = [], [], [], []
    for u, seq in by_user.items():
      for pos, (i, t, s) in enumerate(seq):
        if s == k:
          us.append(u)
          ts.append(i)
          times.append(t)
          hs.append(np.array([j for j, _, _ in seq[:pos] if j != i], np.int64))
    out[name] = (np.array(us), np.array(ts), np.array(times), hs)
  return out, np.bincount(item[split == 0], minlength=0)


def log_inclusion(world: world_lib.World, late: bool) -> np.ndarray:
  """(personas, N) log P(a video is in a slate shown to the persona's users) before (`late`
  False) or after the cold videos' publication: the slate's slots drawn uniformly, or by the
  feed from exp(exposure_taste x affinity), over the warm videos, and after publication a
  `cold_share_after_publish` share of them over the cold ones (repeats within a slate, redrawn
  uniformly, are ignored here)."""
  c = world.config
  cold = np.array([v.cold for v in world.videos])
  out = np.full((len(world.persona_taste), len(world.videos)), -np.inf)
  share = c.cold_share_after_publish if late and cold.any() else 0.0
  for pool, slots in ((~cold, c.slate_size * (1 - share)), (cold, c.slate_size * share)):
    if slots <= 0 or not pool.any():
      continue
    logits = c.exposure_taste * (world.persona_taste @ world.features[pool].T).astype(np.float64)
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    out[:, pool] = np.log(-np.expm1(slots * np.log1p(-np.minimum(w, 1 - 1e-12))))
  return out


def ranks(scores: np.ndarray, targets: np.ndarray, histories: list) -> np.ndarray:
  """0-based rank of each row's target among the row's candidates (history removed; ties
  against the target)."""
  s = scores.copy()
  for r, h in enumerate(histories):
    s[r, h] = -np.inf
  t = s[np.arange(len(s)), targets]
  return (s >= t[:, None]).sum(1) - 1


def metrics(r: np.ndarray, ks) -> dict:
  out = {}
  for k in ks:
    hit = r < k
    out[f"hr@{k}"] = float(hit.mean())
    out[f"ndcg@{k}"] = float((hit / np.log2(r + 2.0)).mean())
  return out


def ceiling(folder: str, ks=(10, 20), min_interactions: int = 5, keep_last: int = 13,
            batch: int = 2048) -> dict:
  """The rankers' valid and test metrics (`test/masked/oracle/hr@10`, ...,
  `test/masked/new/content/hr@10`, `test/count`) on a release the synthetic world wrote."""
  stamp = json.load(open(os.path.join(folder, "world_config.json")))
  world = world_lib.World(WorldConfig.from_args(  # exposure_taste 0 is left out of stamps
      {"exposure_taste": 0.0, **stamp["world"], "layout": "microlens"}))
  n_items = len(world.videos)
  exposure = {late: log_inclusion(world, late) for late in (False, True)}
  qs, train_clicks = queries(*read_pairs(folder), min_interactions, keep_last)
  def train_clicks_of(items):
    return np.where(items < len(train_clicks), train_clicks[np.minimum(items, len(train_clicks) - 1)], 0)

  tie = np.random.default_rng(0).random(n_items) * 1e-6  # a fixed random order within ties
  pop = np.zeros(n_items, np.float64)
  pop[:len(train_clicks)] = train_clicks
  pop += tie
  results = {}
  for split, (users, targets, times, hist) in qs.items():
    rows = {name: [] for name in ("oracle", "content", "popularity")}
    for start in range(0, len(users), batch):
      u = users[start:start + batch]
      t, h = targets[start:start + batch], hist[start:start + batch]
      taste = (world.user_taste[u] @ world.features.T
               + world.user_order_taste[u] @ world.order_features.T)
      late = times[start:start + batch] / 1000.0 >= world.train_end
      shown = np.where(late[:, None], exposure[True][world.user_persona[u]],
                       exposure[False][world.user_persona[u]])
      base = world.config.base_logit + world.user_bias[u][:, None]
      for name, logit in (("content", base + taste), ("oracle", base + taste
                                                      + world.video_bias[None])):
        score = shown - np.logaddexp(0.0, -logit)  # log exposure + log sigmoid(logit)
        rows[name].append(ranks(score + tie[None], t, h))
      rows["popularity"].append(ranks(np.broadcast_to(pop, (len(u), n_items)), t, h))
    new = train_clicks_of(targets) == 0  # targets with no training click (as `new` in full_sort)
    for name, r in rows.items():
      r = np.concatenate(r)
      for key, v in metrics(r, ks).items():
        results[f"{split}/masked/{name}/{key}"] = v
      if new.any():
        for key, v in metrics(r[new], ks).items():
          results[f"{split}/masked/new/{name}/{key}"] = v
    results[f"{split}/masked/new/count"] = int(new.sum())
    candidates = n_items - np.array([len(x) for x in hist])
    for k in ks:
      results[f"{split}/masked/random/hr@{k}"] = float(np.mean(k / candidates))
    results[f"{split}/count"] = len(users)
  return results


def main(argv):
  del argv
  f = flags.FLAGS
  results = ceiling(f.release, [int(k) for k in f.ks], f.min_interactions, f.keep_last, f.batch)
  for key in sorted(results):
    print(f"{key}: {results[key]:.4f}" if isinstance(results[key], float) else
          f"{key}: {results[key]}")
  if f.out:
    with open(f.out, "w") as out:
      json.dump(results, out, indent=1, sort_keys=True)


if __name__ == "__main__":  # flags defined here only: benchmarks/microlens.py imports `ceiling`
  flags.DEFINE_string("release", None, "A release folder the synthetic world wrote.")
  flags.DEFINE_integer("min_interactions", 5, "MicroLens' protocol: 5.")
  flags.DEFINE_integer("keep_last", 13, "MicroLens' protocol: 13.")
  flags.DEFINE_list("ks", ["10", "20"], "Cut-offs.")
  flags.DEFINE_integer("batch", 2048, "Users scored at once.")
  flags.DEFINE_string("out", "", "Also write the metrics here as JSON.")
  flags.mark_flag_as_required("release")
  app.run(main)
