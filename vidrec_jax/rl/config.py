"""Checks of the RL experiment's config (`--mode=rl`, or `train.trainer=reinforce`): the `rl`
section and the model and data it needs. Each policy of `rl.policies` is looked up in the policy
registry (rl/policies/) and checks what it needs itself."""

from __future__ import annotations

from vidrec_jax.config_checks import check
from vidrec_jax.config_checks import positive_int
from vidrec_jax.data import world as world_lib
from vidrec_jax.rl import evaluation as eval_lib
from vidrec_jax.rl import losses
from vidrec_jax.rl import simulator as sim_lib
from vidrec_jax.rl.policies import POLICIES
from vidrec_jax.rl.trainer import ACTIONS
from vidrec_jax.run_spec import RunSpec

BEHAVIOURS = ("logged", "estimated")


def validate(c: RunSpec) -> None:
  """Raises ConfigError on a bad `rl` section or a model that does not fit it (on the resolved
  settings: vidrec_jax/validate.py resolves the config first)."""
  check(c.rl is not None, "rl", None, "the RL experiment needs an `rl` section (configs/rl.py)")
  r = c.rl
  check(c.data.dataset.name == "synthetic", "data.dataset.name", c.data.dataset.name,
        "the RL simulator is built from the synthetic world: 'synthetic'")
  check(c.model.name == "policy", "model.name", c.model.name, "RL trains the 'policy' model")
  check(isinstance(r.seeds, (tuple, list)) and len(r.seeds) > 0
        and all(isinstance(s, int) for s in r.seeds), "rl.seeds", r.seeds,
        "a non-empty tuple of integers")
  check(isinstance(r.policies, (tuple, list)) and len(r.policies) > 0
        and all(isinstance(p, str) and p in POLICIES for p in r.policies), "rl.policies",
        r.policies, f"a tuple of registered RL policies: {', '.join(POLICIES.names())}")
  check(r.correction in losses.CORRECTIONS, "rl.correction", r.correction,
        f"registered: {', '.join(losses.CORRECTIONS.names())}")
  check(r.behaviour in BEHAVIOURS, "rl.behaviour", r.behaviour,
        f"allowed: {', '.join(BEHAVIOURS)}")
  check(r.behaviour == "logged" or c.model.estimate_behaviour, "rl.behaviour", r.behaviour,
        "'estimated' needs model.estimate_behaviour=True (the behaviour head)")
  check(r.actions in ACTIONS, "rl.actions", r.actions, f"allowed: {', '.join(ACTIONS)}")
  check(r.serving in eval_lib.SERVING, "rl.serving", r.serving,
        f"allowed: {', '.join(eval_lib.SERVING)}")
  metrics = tuple(f"valid/{m}" for m in eval_lib.METRICS)
  check(c.train.best_metric in ("",) + metrics, "train.best_metric", c.train.best_metric,
        f"'' (off) or a simulated valid metric: {', '.join(metrics)}")
  check(isinstance(r.topk_k, int) and r.topk_k >= 0, "rl.topk_k",
        r.topk_k, "an integer >= 0 (0: the slate size)")
  check(r.weight_cap > 0, "rl.weight_cap", r.weight_cap, "must be > 0 (e.g. e^3 = 20.09)")
  check(0.0 <= r.discount <= 1.0, "rl.discount", r.discount, "must be in [0, 1]")
  check(r.behaviour_temperature > 0, "rl.behaviour_temperature", r.behaviour_temperature,
        "must be > 0")
  for f in ("log_sessions", "held_out_sessions", "eval_sessions"):
    positive_int(r[f], f"rl.{f}")
  a = sim_lib.SimArgs.from_config(r.simulator)
  for f in ("slate_size", "session_steps", "history_len"):
    positive_int(getattr(a, f), f"rl.simulator.{f}")
  check(-1.0 < a.appeal_quality_corr < 1.0, "rl.simulator.appeal_quality_corr",
        a.appeal_quality_corr, "must be in (-1, 1)")
  check(a.slate_size <= c.data.dataset.num_videos, "rl.simulator.slate_size", a.slate_size,
        f"must be <= data.dataset.num_videos={c.data.dataset.num_videos}")
  check(c.data.history.max_len == a.history_len, "data.history.max_len",
        c.data.history.max_len, f"must equal rl.simulator.history_len={a.history_len}")
  width = world_lib.factor_width(c.data.dataset.num_palettes)
  check(c.model.content_width == width, "model.content_width", c.model.content_width,
        f"must be the world's factor width {width} (num_palettes + 9)")
  for p in r.policies:
    POLICIES.get(p).check(r)
