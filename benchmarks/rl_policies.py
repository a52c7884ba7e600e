"""What does REINFORCE with the top-K off-policy correction gain over the supervised greedy
ranker in the simulator, and do the off-policy estimates see it?

  python benchmarks/rl_policies.py --root=/tmp/vidrec_rl_bench [--config=configs/rl.py]

Runs `python -m vidrec_jax.main --config=CONFIG --workdir=ROOT/run` (timed; a rerun resumes and
reads finished policies back), then prints, from ROOT/run/eval/rl.json, a markdown table of every
policy's simulated session return (mean ± std over seeds, and per seed), sessions' clicks and
steps, the mean latent quality of what it shows, the IPS and SNIPS estimates from held-out logs,
the gain over greedy, and whether each estimator orders the policies as the simulator does (all
of them, and the pairs the simulator separates: one policy ahead on every seed). The
plot of return against training step is ROOT/run/eval/rl_returns.png.
"""

import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

_ROOT = flags.DEFINE_string("root", "/tmp/vidrec_rl_bench", "Workdir root.")
_CONFIG = flags.DEFINE_string("config", "configs/rl.py", "RL config (with its argument).")
_OUT = flags.DEFINE_string("out", "", "Also write the table as markdown here.")
_TABLE_ONLY = flags.DEFINE_bool("table_only", False, "Format ROOT/run/eval/rl.json, run nothing.")

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
  lines = [f"{_CONFIG.value}, seeds {s['seeds']}, {when}", "",
           "| policy | return (s/session) | per seed | clicks | steps | shown quality | "
           "IPS | SNIPS | vs greedy |", "|---|---|---|---|---|---|---|---|---|"]
  for p in policies:
    seeds = ", ".join(f"{v:.2f}" for v in s[f"return/{p}/seeds"])
    gain = s.get(f"gain/{p}")
    lines.append(f"| {p} | {_cell(s, f'return/{p}')} | {seeds} | {_cell(s, f'clicks/{p}', 1)} "
                 f"| {_cell(s, f'steps/{p}', 1)} | {_cell(s, f'shown_quality/{p}')} | "
                 f"{_cell(s, f'ips/{p}', 1)} | {_cell(s, f'snips/{p}', 1)} | "
                 f"{'' if gain is None else f'{100 * gain:+.1f}%'} |")
  lines.append("")
  for est in ("ips", "snips"):
    lines.append(f"- {est.upper()} orders the policies as the simulator: "
                 f"{'yes' if s[f'same_order/{est}'] else 'no'} (Spearman "
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
