"""Where a study lives, and how a sweep gets back the trials of a process that died.

`sweep.storage` picks the storage: '' is SQLite in the sweep's workdir (`study.db`), 'journal'
or a path ending in `.journal` is a journal file (`study.journal` for 'journal'; fit for a
shared disk), anything else is an RDB URL that several hosts share.

A trial records the host and process that run it (user attributes `host`, `pid`). A trial left
RUNNING by a process of this host that is gone (`kill -9`, a crash) is marked failed and
enqueued again with the same parameters and workdir, so it resumes from its last checkpoint;
the re-run records `retry_of`. With an RDB storage and `sweep.heartbeat_seconds`, optuna notices
a dead host by its missed heartbeats and the same re-run happens on another host.
"""

from __future__ import annotations

import os
import socket

import ml_collections
import optuna
from absl import logging


def make(sweep: ml_collections.ConfigDict, root: str) -> optuna.storages.BaseStorage:
  """The storage `sweep.storage` names, for the sweep in `root`.

  Args:
    sweep: the config's `sweep` section (`storage`, `heartbeat_seconds`).
    root: the sweep's workdir.

  Returns:
    A journal storage for 'journal' or a `.journal` path; else an RDB storage (SQLite in `root`
    for ''), beating a heartbeat for every trial when `sweep.heartbeat_seconds` is set.
  """
  url = sweep.storage
  if url == "journal" or url.endswith(".journal"):
    from optuna.storages import journal  # pylint: disable=g-import-not-at-top
    path = os.path.join(root, "study.journal") if url == "journal" else url
    return optuna.storages.JournalStorage(journal.JournalFileBackend(path))
  url = url or f"sqlite:///{os.path.abspath(os.path.join(root, 'study.db'))}"
  beat = sweep.heartbeat_seconds
  return optuna.storages.RDBStorage(
      url, heartbeat_interval=beat or None, grace_period=3 * beat if beat else None,
      heartbeat_stale_trial_callback=_retry if beat else None)


def _retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
  """Re-runs a failed-by-interruption trial with its parameters, in its workdir."""
  study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number,
                                                "workdir": trial.user_attrs.get("workdir", "")},
                      skip_if_exists=False)
  logging.warning("trial %d was interrupted (%s); it is re-run with the same parameters",
                  trial.number, trial.user_attrs.get("error", "its process is gone"))


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def recover_interrupted(study: optuna.Study) -> list[int]:
  """Trials left RUNNING by a dead process of this host: marked failed and re-enqueued.

  optuna has no public call to fail another process's trial, so this writes through the
  study's storage by trial id (private attributes of optuna's `Study` and `FrozenTrial`).

  Returns:
    The numbers of the trials re-enqueued.
  """
  host, out = socket.gethostname(), []
  storage_ = study._storage  # pylint: disable=protected-access
  for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
    pid = t.user_attrs.get("pid")
    if t.user_attrs.get("host") != host or pid is None or pid == os.getpid() or _alive(pid):
      continue
    storage_.set_trial_user_attr(t._trial_id, "error",  # pylint: disable=protected-access
                                 f"interrupted: process {pid} on {host} is gone")
    storage_.set_trial_state_values(t._trial_id,  # pylint: disable=protected-access
                                    optuna.trial.TrialState.FAIL)
    _retry(study, study.get_trials(deepcopy=False)[t.number])
    out.append(t.number)
  return out
