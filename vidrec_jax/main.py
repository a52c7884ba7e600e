r"""Entry point: python -m vidrec_jax.main --config=configs/demo.py --workdir=DIR [--mode=...].

Modes (vidrec_jax/experiment.py): `train` (prepare the dataset and caches if needed, train with
resume, evaluate), `eval` (evaluate the latest or best checkpoint), `generate` (write the dataset
only), `extract` (write the caches of the pretrained parts), `sweep` (the hyperparameter
search of `config.sweep` with `sweep.trials` trials, as `python -m vidrec_jax.sweep`), `rl`
(the reinforcement-learning experiment of `config.rl`: configs/rl.py), `recommend` (the top
`--k` videos for `--user`, printed and written to WORKDIR/recommend/USER.json) and `export` (the
serving bundle in `--export_dir`): vidrec_jax/recommend.py and vidrec_jax/export.py.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from vidrec_jax.cli import EXIT_BAD_CONFIG
from vidrec_jax.cli import QuietLibraries
from vidrec_jax.cli import parse_flags
from vidrec_jax.cli import run_errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data, checkpoints and metrics.")
_MODE = flags.DEFINE_enum("mode", None, ["train", "eval", "generate", "extract", "sweep", "rl",
                                          "recommend", "export"],
                          "Overrides config.mode when given.")
_CHECKPOINT = flags.DEFINE_enum(
    "checkpoint", "latest", ["latest", "best"],
    "Which checkpoint --mode=eval evaluates (and recommend and export serve): the newest, or the "
    "best by train.best_metric.")
_USER = flags.DEFINE_string("user", None, "--mode=recommend: the user id as the dataset's logs "
                            "name it (an unknown one gets the cold-start user's list).")
_K = flags.DEFINE_integer("k", None, "--mode=recommend: list length (default: config.recommend.k).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "", "--mode=export: the bundle's folder "
                                  "('' = WORKDIR/export).")
_POLICY = flags.DEFINE_string("policy", "", "--mode=recommend/export of an RL experiment's "
                              "workdir (configs/rl.py): the trained policy of rl.policies to "
                              "serve.")
_RL_SEED = flags.DEFINE_integer("rl_seed", None, "--mode=recommend/export of an RL experiment: "
                                "the seed whose policy is served (default: the first of "
                                "rl.seeds).")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "off", ["off", "auto", "explicit"],
    "Multi-process JAX: off (one process; unless --coordinator_address or VIDREC_COORDINATOR is "
    "set), auto (JAX's cluster detection: SLURM, Cloud TPU, ...), explicit (the flags below).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")

def _sweep(config, workdir: str) -> None:
  """--mode=sweep: `python -m vidrec_jax.sweep` with config.sweep.trials trials."""
  from vidrec_jax.tuning import study  # pylint: disable=g-import-not-at-top
  from vidrec_jax.config_checks import ConfigError  # pylint: disable=g-import-not-at-top
  base = config_flags.get_config_filename(flags.FLAGS["config"])
  file, sep, arg = base.partition(":")
  overrides = dict(config_flags.get_override_values(flags.FLAGS["config"]))
  overrides.pop("mode", None)
  with config.unlocked():
    config.mode = "train"  # what each trial does
  try:
    study.run_sweep(config, workdir, None, os.path.abspath(file) + sep + arg, overrides)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)


def _recommend():
  from vidrec_jax import recommend  # pylint: disable=g-import-not-at-top
  return recommend


def _export():
  from vidrec_jax import export  # pylint: disable=g-import-not-at-top
  return export


def _serve_policy(config, workdir: str) -> None:
  """--mode=recommend / export of an RL experiment: the --policy trained on --rl_seed."""
  # pylint: disable=g-import-not-at-top
  from vidrec_jax import experiment
  from vidrec_jax.rl import serve
  # pylint: enable=g-import-not-at-top
  which = _CHECKPOINT.value
  p = experiment.restore_policy(config, workdir, which, _POLICY.value, _RL_SEED.value)
  s = serve.servable(p)
  if config.mode == "recommend":
    _recommend().recommend_servable(s, p.spec, workdir, _USER.value, _K.value, which)
  else:
    _export().export_servable(s, p.spec, workdir, _EXPORT_DIR.value or None, which,
                        lambda ids, size: serve.thumbnails(p.world, ids, size),
                        policy=p.policy, rl_seed=p.seed)


def jax_process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()


def main(argv):
  del argv
  logging.get_absl_handler().addFilter(QuietLibraries())
  if _CONFIG.value is None or not _WORKDIR.value:
    print("error: --config and --workdir are required", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)
  # Imported here so that flag errors do not pay for importing JAX.
  from vidrec_jax import validate  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  if _MODE.value:
    with config.unlocked():
      config.mode = _MODE.value
  try:
    validate.validate(config)
  except validate.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)
  if config.mode == "recommend" and (not _USER.value or (_K.value is not None and _K.value < 1)):
    print("error: --mode=recommend needs --user=ID (and --k, when given, >= 1)", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)
  serves_policy = config.mode in ("recommend", "export") and config.model.name == "policy"
  if (_POLICY.value or _RL_SEED.value is not None) and not serves_policy:
    print("error: --policy and --rl_seed choose what --mode=recommend/export serves of an RL "
          "experiment (configs/rl.py); this is not one", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)

  from vidrec_jax import experiment  # pylint: disable=g-import-not-at-top
  from vidrec_jax.train import distributed  # pylint: disable=g-import-not-at-top
  try:
    distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)
  if jax_process_index() != 0:
    logging.set_verbosity(logging.WARNING)  # host 0 alone writes the info log

  modes = {"train": experiment.train, "generate": experiment.generate,
           "extract": experiment.extract,
           "eval": lambda c, w: experiment.evaluate(c, w, _CHECKPOINT.value),
           "sweep": _sweep, "rl": experiment.rl,
           "recommend": lambda c, w: _recommend().recommend(
               experiment.restore(c, w, _CHECKPOINT.value, "recommend from"), w, _USER.value,
               _K.value, _CHECKPOINT.value),
           "export": lambda c, w: _export().export(
               experiment.restore(c, w, _CHECKPOINT.value, "export"), w,
               _EXPORT_DIR.value or None, _CHECKPOINT.value)}
  if serves_policy:
    modes["recommend"] = modes["export"] = _serve_policy
  try:
    modes[config.mode](config, _WORKDIR.value)
  except validate.ConfigError as e:  # a policy or seed the experiment does not have
    print(f"error: {e}", file=sys.stderr)
    sys.exit(EXIT_BAD_CONFIG)
  except run_errors() as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(main, flags_parser=parse_flags)
