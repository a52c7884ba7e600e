"""What does REINFORCE with the top-K off-policy correction gain over the supervised greedy
ranker in the simulator, and do the off-policy estimates see it?

  python benchmarks/rl_policies.py --root=/tmp/vidrec_rl_bench [--config=configs/rl.py]

Runs `python -m vidrec_jax.main --config=CONFIG --workdir=ROOT/run` (timed; a rerun resumes and
reads finished policies back), then prints, from ROOT/run/eval/rl.json, a markdown table of every
policy's simulated valid return (what its checkpoint was chosen by) beside its test return
(mean ± sample SD over seeds, and per seed), sessions' clicks and steps, the mean latent quality
of what it shows, the IPS and SNIPS estimates from held-out logs (weighted as the policy is
served, and as its softmax), the gain over greedy with paired tests (seeds share the simulated
luck), and whether each estimator orders the policies as the simulator does (all of them, and
the pairs the simulator separates: one policy ahead on every seed). The
plot of return against training step is ROOT/run/eval/rl_returns.png.
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

import stats  # benchmarks/stats.py

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_rl_bench", "Workdir root.")
_CONFIG = flags.DEFINE_string("config", "configs/rl.py", "RL config (with its argument).")
_OUT = flags.DEFINE_string("out", "", "Also write the table as markdown here.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Format ROOT/run/eval/rl.json, run nothing.")

# rl.json's off-policy estimates: as each policy is served, and as its softmax (rl/estimators.py)
ESTIMATES = ("ips", "snips", "ips_softmax", "snips_softmax")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cell(s: dict, key: str, digits: int = 2) -> str:
  return f"{s[key]:.{digits}f} ± {s[key + '/std']:.{digits}f}"


def main(argv):
  del argv
  workdir = os.path.join(_ROOT.value, "run")
  t0 = time.time()
  if not _TABLE_ONLY.value:
    r = subprocess.run([sys.executable, "-m", "vidrec_jax.main", f"--config={_CONFIG.value}",
                        f"--workdir={workdir}"], cwd=REPO, capture_output=True, text=True,
                       check=False)
    if r.returncode:
      print(r.stderr[-3000:])
      raise SystemExit("the RL run failed")
  wall = time.time() - t0
  with open(os.path.join(workdir, "eval", "rl.json")) as f:
    s = json.load(f)
  policies = s["policies"]
  when = "not run here" if _TABLE_ONLY.value else f"wall time {wall:.0f} s (this run)"
  n = len(s["seeds"])
  lines = [f"{_CONFIG.value}, seeds {s['seeds']} (n = {n}; mean ± sample SD), {when}", "",
           "| policy | valid return | test return (s/session) | per seed | clicks | steps | "
           "shown quality | IPS | SNIPS | IPS softmax | SNIPS softmax | vs greedy |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for p in policies:
    seeds = ", ".join(f"{v:.2f}" for v in s[f"return/{p}/seeds"])
    gain = s.get(f"gain/{p}")
    lines.append(f"| {p} | {_cell(s, f'valid_return/{p}')} | {_cell(s, f'return/{p}')} | "
                 f"{seeds} | {_cell(s, f'clicks/{p}', 1)} | {_cell(s, f'steps/{p}', 1)} | "
                 f"{_cell(s, f'shown_quality/{p}')} | "
                 + " | ".join(_cell(s, f"{e}/{p}", 1) for e in ESTIMATES)
                 + f" | {'' if gain is None else f'{100 * gain:+.1f}%'} |")
  lines.append("")
  # Seeds share the simulated luck across policies (common random numbers): paired tests.
  for a, b in (("ips_click", "greedy"), ("reinforce_offpolicy", "ips_click"),
               ("reinforce_topk", "reinforce_offpolicy"), ("reinforce_topk", "greedy")):
    if a in policies and b in policies and n > 1:
      lines.append("- test return: " + stats.verdict(s[f"return/{a}/seeds"],
                                                     s[f"return/{b}/seeds"], (a, b), "paired"))
  for est in ESTIMATES:
    lines.append(f"- {est.upper().replace('_SOFTMAX', ' (softmax)')} orders the policies as "
                 f"the simulator: {'yes' if s[f'same_order/{est}'] else 'no'} (Spearman "
                 f"{s[f'rank_correlation/{est}']:.2f}); the {s['separated_pairs']} pairs that "
                 "the simulator separates (one policy ahead on every seed): "
                 f"{'yes' if s[f'separated_order/{est}'] else 'no'}")
  text = "\n".join(lines)
  print(text)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(text + "\n")


if __name__ == "__main__":
  app.run(main)
