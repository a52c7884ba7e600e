"""A self-contained HTML report (inline CSS, no scripts, nothing fetched) with PNG plots beside it,
rendered from what runs and sweeps already write:

  run workdir    tensorboard/ (training curves per task, valid metrics over steps),
                 eval/metrics.json (the final metric table), config.json
  sweep workdir  the Optuna study (optimisation history, intermediate values, parameter
                 importances, parallel coordinates) and trials.json (the trial table)

Several workdirs go side by side: one line per run in every curve, one column per run in the
metric table (an ablation reads across a row).
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
import re

from absl import logging

from vidrec_jax import files
from vidrec_jax.reporting import events
from vidrec_jax.reporting.plots import pyplot
from vidrec_jax.run_spec import Section

# Scalars that are bookkeeping rather than curves worth a panel.
SKIP_CURVE = re.compile(r"(^|/)(count|click_rate|skipped_\w+|valid_fraction)$")
MAX_PANELS = 12


@dataclasses.dataclass
class Run:
  name: str
  path: str
  scalars: dict[str, list[tuple[int, float]]]
  metrics: dict[str, float | None]
  config: dict


@dataclasses.dataclass
class Study:
  name: str
  path: str
  study: object  # optuna.Study
  trials: dict  # trials.json


def _names(paths: list[str]) -> list[str]:
  """Short distinct labels: basenames, with parents added where two collide."""
  parts = [os.path.normpath(os.path.abspath(p)).split(os.sep) for p in paths]
  depth = 1
  while depth < 6:
    names = ["/".join(p[-depth:]) for p in parts]
    if len(set(names)) == len(names):
      return names
    depth += 1
  return [os.path.abspath(p) for p in paths]


def _read_json(path: str) -> dict:
  return files.read_json(path) if os.path.exists(path) else {}


def is_study(path: str) -> bool:
  return os.path.exists(os.path.join(path, "trials.json"))


def load(paths: list[str]) -> tuple[list[Run], list[Study]]:
  """Reads every workdir; a path that is neither a run nor a study is one ValueError line."""
  runs, studies = [], []
  for name, path in zip(_names(paths), paths):
    if is_study(path):
      studies.append(_load_study(name, path))
      continue
    has_run = any(os.path.exists(os.path.join(path, p)) for p in (
        "tensorboard", os.path.join("eval", "metrics.json")))
    if not has_run:
      raise ValueError(f"{path}: not a run workdir (no tensorboard/ or eval/metrics.json) nor a "
                       "sweep workdir (no trials.json)")
    runs.append(Run(name, path, events.read_scalars(path),
                    _read_json(os.path.join(path, "eval", "metrics.json")),
                    _read_json(os.path.join(path, "config.json"))))
  return runs, studies


def _load_study(name: str, path: str) -> Study:
  import optuna  # pylint: disable=g-import-not-at-top
  from vidrec_jax.tuning import storage as storage_lib  # pylint: disable=g-import-not-at-top
  trials = files.read_json(os.path.join(path, "trials.json"))
  # A sweep records its config (config.json) before its first trial.
  sweep = files.read_json(os.path.join(path, "config.json"))["sweep"]
  section = Section(dict(storage=sweep["storage"], heartbeat_seconds=0))
  study = optuna.load_study(study_name=trials["study"],
                            storage=storage_lib.make(section, path))
  return Study(name, path, study, trials)


# --- plots -----------------------------------------------------------------------------------


def _curve_plot(out: str, runs: list[Run], tags: list[str], title: str) -> str | None:
  """One panel per tag, one line per run; returns the PNG's file name (None when no tag)."""
  if not tags:
    return None
  plt = pyplot()
  cols = min(3, len(tags))
  rows = math.ceil(len(tags) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
  for ax, tag in zip(axes.flat, tags):
    for run in runs:
      points = run.scalars.get(tag)
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if len(points) < 20 else None, markersize=3,
                label=run.name)
    ax.set_title(tag.replace("_at_", "@"), fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(tags):]:
    ax.axis("off")
  if len(runs) > 1:
    axes.flat[0].legend(fontsize=7)
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  name = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") + ".png"
  fig.savefig(os.path.join(out, name), dpi=90)
  plt.close(fig)
  return name


def training_tags(runs: list[Run]) -> list[str]:
  """The losses (total and per task), then the other training scalars."""
  tags = sorted({t for r in runs for t in r.scalars
                 if not t.startswith(("valid/", "test/", "train/"))
                 and not SKIP_CURVE.search(t)})
  losses = [t for t in tags if t == "loss" or t.startswith("loss/")]
  return (losses + [t for t in tags if t not in losses])[:MAX_PANELS]


def valid_tags(runs: list[Run]) -> list[str]:
  """Valid metrics evaluated more than once (curves), the best metric first."""
  # A run's config of record (config.json; {} for a folder without one) names its best metric.
  first = {r.config["train"]["best_metric"] for r in runs if r.config}
  tags = sorted({t for r in runs for t, pts in r.scalars.items()
                 if t.startswith("valid/") and len(pts) > 1 and not SKIP_CURVE.search(t)
                 and "oracle" not in t})
  ranked = [t for t in tags if t.replace("_at_", "@") in first] + [
      t for t in tags if t.replace("_at_", "@") not in first]
  return ranked[:MAX_PANELS]


def _study_plot(out: str, study: Study, kind: str) -> tuple[str | None, str]:
  """One of optuna's matplotlib plots; (file name or None, a note when it cannot be drawn)."""
  import optuna  # pylint: disable=g-import-not-at-top
  from optuna.visualization import matplotlib as ovm  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top
  plt = pyplot()
  fn = {"history": ovm.plot_optimization_history,
        "intermediate": ovm.plot_intermediate_values,
        "importances": ovm.plot_param_importances,
        "parallel": ovm.plot_parallel_coordinate}[kind]
  complete = study.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
  if kind in ("importances", "parallel") and len(complete) < 2:
    return None, f"needs 2 complete trials ({len(complete)} so far)"
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
      ax = fn(study.study)
  except (ValueError, RuntimeError, ZeroDivisionError) as e:
    return None, f"not drawn: {' '.join(str(e).split())}"
  ax = ax.flat[0] if hasattr(ax, "flat") else ax
  fig = ax.figure
  fig.set_size_inches(10 if kind == "parallel" else 7.5, 4.5)
  fig.tight_layout()
  name = f"{re.sub(r'[^a-z0-9]+', '_', study.name.lower()).strip('_')}_{kind}.png"
  fig.savefig(os.path.join(out, name), dpi=90)
  plt.close(fig)
  return name, ""


# --- HTML ------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #1d2430; max-width: 1320px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #d0d7de;
     padding-bottom: 4px; margin-top: 32px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f5f8; position: sticky; top: 0; }
tr.best td { background: #e6f4ea; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eaeef2; margin: 6px 0; }
.note { color: #57606a; font-size: 12px; } .state-FAIL { color: #b42318; }
.state-PRUNED { color: #8a6d00; } code { font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 12px; }
.grid h3 { margin: 4px 0; font-size: 14px; }
"""


def _fmt(v) -> str:
  if v is None:
    return "–"
  if isinstance(v, float):
    return f"{v:.4f}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.3g}"
  return html.escape(str(v))


def _metric_table(runs: list[Run]) -> str:
  keys = sorted({k for r in runs for k, v in r.metrics.items() if v is not None},
                key=lambda k: (not k.startswith("test/"), not k.startswith("valid/"), k))
  if not keys:
    return '<p class="note">no eval/metrics.json yet</p>'
  head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
  rows = "".join(
      f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{_fmt(r.metrics.get(k))}</td>"
                                                  for r in runs) + "</tr>" for k in keys)
  return f"<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _trial_table(study: Study) -> str:
  t = study.trials
  best = study.study.best_trial.number if t["counts"]["complete"] else None
  fields = sorted({f for row in t["trials"] for f in row["params"]})
  head = "".join(f"<th>{html.escape(f)}</th>" for f in fields)
  rows = []
  for row in t["trials"]:
    cls = ' class="best"' if row["number"] == best else ""
    cells = "".join(f"<td>{_fmt(row['params'].get(f))}</td>" for f in fields)
    note = row["error"] or (f"re-run of {row['retry_of']}" if row["retry_of"] is not None
                            else "")
    rows.append(
        f"<tr{cls}><td>{row['number']}</td><td class=\"state-{row['state']}\">{row['state']}"
        f"</td><td>{_fmt(row['value'])}</td><td>{_fmt(row['test'])}</td>{cells}"
        f"<td>{_fmt(row['seconds'])}</td><td>{html.escape(note or '')}</td></tr>")
  return (f"<table><thead><tr><th>trial</th><th>state</th><th>{html.escape(t['metric'])}</th>"
          f"<th>{html.escape(t['test_metric'])}</th>{head}<th>seconds</th><th>note</th></tr>"
          f"</thead><tbody>{''.join(rows)}</tbody></table>")


def _img(name: str | None, alt: str, note: str = "") -> str:
  if name is None:
    return f'<p class="note">{html.escape(alt)}: {html.escape(note or "nothing to plot")}</p>'
  return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">'


def build(paths: list[str], out: str, title: str = "vidrec_jax report") -> str:
  """Writes OUT/index.html and its PNGs; returns the page's path."""
  runs, studies = load(paths)
  os.makedirs(out, exist_ok=True)
  parts = [f"<h1>{html.escape(title)}</h1>",
           '<p class="note">' + ", ".join(f"<code>{html.escape(os.path.abspath(p))}</code>"
                                          for p in paths) + "</p>"]
  plots = {}
  for study in studies:
    c = study.trials["counts"]
    parts.append(f"<h2>Sweep {html.escape(study.name)}</h2>")
    parts.append(f'<p>{c["complete"]} complete, {c["pruned"]} pruned, {c["failed"]} failed '
                 f'trials; chosen on <code>{html.escape(study.trials["metric"])}</code> '
                 f'({study.trials["mode"]}).</p>')
    cells = []
    for kind, label in (("history", "Optimisation history"),
                        ("intermediate", "Intermediate values (pruning)"),
                        ("importances", "Parameter importances"),
                        ("parallel", "Parallel coordinates")):
      name, note = _study_plot(out, study, kind)
      plots[f"{study.name}/{kind}"] = name
      cells.append(f"<div><h3>{label}</h3>{_img(name, label, note)}</div>")
    parts.append('<div class="grid">' + "".join(cells) + "</div>")
    parts.append("<h3>Trials</h3>" + _trial_table(study))
  if runs:
    label = "Runs" if len(runs) > 1 else "Run"
    parts.append(f"<h2>{label}: " + ", ".join(html.escape(r.name) for r in runs) + "</h2>")
    name = _curve_plot(out, runs, training_tags(runs), "Training curves")
    plots["training"] = name
    parts.append("<h3>Training curves per task</h3>" + _img(name, "training curves"))
    name = _curve_plot(out, runs, valid_tags(runs), "Valid metrics over steps")
    plots["valid"] = name
    parts.append("<h3>Valid metrics over steps</h3>" + _img(
        name, "valid metrics", "no periodic evaluation (train.eval_every = 0)"))
    parts.append("<h3>Final metrics</h3>" + _metric_table(runs))
  page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
          f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
          + "\n".join(parts) + "</body></html>\n")
  path = os.path.join(out, "index.html")
  with files.atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write(page)
  files.write_json(os.path.join(out, "plots.json"), plots)
  logging.info("report: %s", path)
  return path

