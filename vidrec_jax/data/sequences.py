"""Watch histories for next-item recommendation: each user's interactions in time order, cut
into training windows, and the (history, target) queries of an evaluation split.

Training windows: a user's training sequence x_0..x_{n-1} gives the next-item pairs
(x_0..x_{t-1} -> x_t) for t >= 1. A window holds up to `max_len` consecutive inputs and predicts
the item after each of them (causally, so every prefix is a sample, as RecBole's SASRec data
augmentation has it); consecutive windows overlap by max_len - stride positions and each target
is trained in exactly one window, where it sees at least max_len - stride earlier items (or all
of them). Batch i of the stream is a pure function of i: windows are shuffled per epoch by a
seed, so a run resumes at any step without iterator state.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vidrec_jax.data.datasets.schema import DataError

PAD = -1  # video id of padding positions


def user_sequences(users: np.ndarray, videos: np.ndarray, order: np.ndarray
                   ) -> dict[int, np.ndarray]:
  """user id -> their video ids sorted by `order` (the log's chronological rank)."""
  o = np.argsort(order, kind="stable")
  users, videos = np.asarray(users)[o], np.asarray(videos)[o]
  by_user = np.argsort(users, kind="stable")
  uniq, starts = np.unique(users[by_user], return_index=True)
  ends = np.r_[starts[1:], len(by_user)]
  return {int(u): videos[by_user[a:b]] for u, a, b in zip(uniq, starts, ends)}


@dataclasses.dataclass(frozen=True)
class Windows:
  """Training windows: inputs (W, L) video ids (PAD after the end), targets (W, L) the next
  video of each input, loss (W, L) 1 where the target is trained in this window."""

  inputs: np.ndarray
  targets: np.ndarray
  loss: np.ndarray
  users: np.ndarray

  def __len__(self) -> int:
    return len(self.inputs)

  @property
  def num_targets(self) -> int:
    return int(self.loss.sum())


def training_windows(sequences: dict[int, np.ndarray], max_len: int, stride: int) -> Windows:
  """Every user's next-item pairs cut into windows (see the module docstring)."""
  if not 1 <= stride <= max_len:
    raise ValueError(f"stride must be in [1, max_len={max_len}], got {stride}")
  inputs, targets, loss, users = [], [], [], []

  def add(u, seq, start, end, first_new):
    x = np.full(max_len, PAD, np.int64)
    y = np.full(max_len, PAD, np.int64)
    m = np.zeros(max_len, np.float32)
    x[:end - start], y[:end - start] = seq[start:end], seq[start + 1:end + 1]
    m[first_new - start:end - start] = 1.0
    inputs.append(x), targets.append(y), loss.append(m), users.append(u)

  for u in sorted(sequences):
    seq = sequences[u]
    n = len(seq) - 1  # next-item pairs: input seq[t] (and the items before it) -> seq[t + 1]
    if n < 1:
      continue
    end = min(max_len, n)
    add(u, seq, 0, end, 0)
    while end < n:  # later windows each train `stride` new pairs with a full context
      first_new, end = end, min(end + stride, n)
      add(u, seq, max(end - max_len, 0), end, first_new)
  if not inputs:
    z = np.zeros((0, max_len))
    return Windows(z.astype(np.int64), z.astype(np.int64), z.astype(np.float32),
                   np.zeros(0, np.int64))
  return Windows(np.stack(inputs), np.stack(targets), np.stack(loss),
                 np.asarray(users, np.int64))


def batch(windows: Windows, index: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
  """Batch `index` of the endless stream: epoch e = index // batches_per_epoch, windows in a
  permutation seeded by (seed, e); the last partial batch of an epoch is dropped."""
  per_epoch = len(windows) // batch_size
  if per_epoch == 0:
    raise DataError(f"the training split makes {len(windows)} history windows, fewer than "
                    f"data.batch_size={batch_size}; lower data.batch_size")
  epoch, i = divmod(index, per_epoch)
  rows = np.random.default_rng([seed, epoch]).permutation(len(windows))
  rows = rows[i * batch_size:(i + 1) * batch_size]
  x = windows.inputs[rows]
  return {"history": x, "history_mask": (x != PAD).astype(np.float32),
          "targets": windows.targets[rows], "loss_mask": windows.loss[rows]}


def queries(sequences: dict[int, np.ndarray], split: dict[str, np.ndarray], max_len: int
            ) -> dict[str, np.ndarray]:
  """The (history, target) query of every record of an evaluation split: the history is the
  user's last `max_len` interactions before the record (in `sequences`, which hold everything
  logged before the split), left-aligned and padded."""
  users = np.asarray(split["user_id"])
  o = np.argsort(np.asarray(split["order"]), kind="stable")
  hist = np.full((len(users), max_len), PAD, np.int64)
  for row in o:
    seq = sequences.get(int(users[row]), np.zeros(0, np.int64))[-max_len:]
    hist[row, :len(seq)] = seq
  return {"history": hist, "history_mask": (hist != PAD).astype(np.float32),
          "target": np.asarray(split["video_id"], np.int64), "user": users}


class ClickHistory:
  """Each user's positive interactions (e.g. clicks) in time order, for histories of logged
  impressions: the history of an impression is the user's last `max_len` positives strictly
  before its timestamp."""

  def __init__(self, users: np.ndarray, videos: np.ndarray, timestamps: np.ndarray):
    o = np.lexsort((np.asarray(timestamps), np.asarray(users)))
    self.users = np.asarray(users)[o]
    self.videos = np.asarray(videos, np.int64)[o]
    self.times = np.asarray(timestamps, np.float64)[o]
    uniq, starts = np.unique(self.users, return_index=True)
    self._span = {int(u): (a, b) for u, a, b in zip(uniq, starts, np.r_[starts[1:],
                                                                         len(self.users)])}

  def __call__(self, users: np.ndarray, times: np.ndarray, max_len: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(history (..., max_len) video ids left-aligned and padded, mask (..., max_len))."""
    users, times = np.asarray(users), np.asarray(times, np.float64)
    hist = np.full(users.shape + (max_len,), PAD, np.int64)
    flat_h, flat_u, flat_t = hist.reshape(-1, max_len), users.reshape(-1), times.reshape(-1)
    for i, (u, t) in enumerate(zip(flat_u, flat_t)):
      a, b = self._span.get(int(u), (0, 0))
      end = a + np.searchsorted(self.times[a:b], t, side="left")
      seq = self.videos[max(a, end - max_len):end]
      flat_h[i, :len(seq)] = seq
    return hist, (hist != PAD).astype(np.float32)
