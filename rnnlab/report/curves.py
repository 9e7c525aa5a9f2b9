r"""Training loss against step: one panel per value of the x axis, one line per group value.

Each line is the median over seeds of the per-seed trailing moving average (over
1/25 of the recorded steps); the raw per-seed curves are drawn faint, a diverged
seed ends in a cross (its loss is masked from its divergence step on), and the
task's trivial baseline (``baseline`` of the members in the panel) is the dashed
black line. Axes other than the panels' and the lines' are fixed (``clip`` to a
clipping-on value). Each panel is drawn by :func:`rnnlab.plot.training_curves`.
At most :data:`MAX_PANELS` panels: beyond, evenly spaced values of the x axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rnnlab import plot as plot_lib
from rnnlab.report import stats, style
from rnnlab.report.reading import CLIP, Experiment

NAME = "training_curves"
TITLE = "Training curves"
MAX_PANELS = 8
BEATS = 0.9  # "clearly below the baseline": a final loss under this fraction of it


def title(exp: Experiment) -> str:
  return TITLE


def _panel_values(values: list[Any]) -> list[Any]:
  if len(values) <= MAX_PANELS:
    return values
  picks = np.unique(np.round(np.linspace(0, len(values) - 1, MAX_PANELS)).astype(int))
  return [values[i] for i in picks]


@style.quiet()
def data(exp: Experiment) -> dict[str, Any] | None:
  """Per panel (x value) and line (group value): the runs x steps loss matrix and its median.

  Returns:
    ``None`` without metric rows for the members shown; else ``{"panels":
    [{"value", "name", "baseline", "lines": {value: line}}], "fixed", "clips", ...}``.
  """
  m = exp.metrics
  if not all(c in m for c in ("member", "step", "loss")) or not exp.n or not m["member"].size:
    return None
  panel = exp.x if exp.x is not exp.group else None
  line = exp.group
  fixed = exp.choose([panel, line])
  sel = exp.select(fixed)
  rows = exp.metric_rows
  safe = np.maximum(rows, 0)
  keep = (rows >= 0) & sel[safe]
  if not keep.any():
    return None
  colors = line.colors() if line is not None else {None: style.SPARE_COLORS[0]}
  panels = []
  runs = 0
  all_panels = list(panel.values) if panel is not None else [None]
  for pv in _panel_values(all_panels):
    in_panel = keep if panel is None else keep & (panel.codes[safe] == panel.code(pv))
    per: dict[Any, dict[str, Any]] = {}
    for v in line.values if line is not None else [None]:
      mask = in_panel if line is None else in_panel & (line.codes[safe] == line.code(v))
      if not mask.any():
        continue
      member_ids = np.unique(m["member"][mask])
      steps, raw = stats.matrix(m["member"][mask], m["step"][mask], m["loss"][mask])
      diverged = []
      for k, member in enumerate(member_ids.tolist()):
        # A run that blew up (finitely) is frozen from diverged_at on: its loss after is
        # that of the blown-up parameters, so it ends there as a non-finite one does.
        at_step = exp.divergence.get(member)
        if at_step is not None:
          raw[k, steps >= at_step] = np.nan
        row = raw[k]
        finite = np.flatnonzero(np.isfinite(row))
        if not finite.size:
          diverged.append((member, int(steps[0]) if at_step is None else at_step))
        elif finite[-1] < row.size - 1:
          diverged.append((member, int(steps[finite[-1] + 1]) if at_step is None else at_step))
      window = max(1, steps.size // 25)
      per[v] = {
        "name": line.name(v) if line is not None else "all runs",
        "color": colors[v],
        "steps": stats.f64(steps),
        "raw": raw,
        "median": plot_lib.smoothed_median(raw, window),
        "window": window,
        "diverged": diverged,
      }
      runs = max(runs, raw.shape[0])
    if not per:
      continue
    members = sel if panel is None else sel & (panel.codes == panel.code(pv))
    panels.append(
      {
        "value": pv,
        "name": panel.name(pv) if panel is not None else None,
        "baseline": exp.baseline(members),
        "lines": per,
      }
    )
  if not panels:
    return None
  clip = exp.axis(CLIP)
  return {
    "panel": panel,
    "panels": panels,
    "skipped": len(all_panels) - len(panels),
    "fixed": fixed,
    "note": exp.fixed_note(fixed),
    "clip": clip,
    "task": exp.task,
    "runs": runs,
  }


def why(exp: Experiment, d: Mapping[str, Any] | None) -> str:
  if exp.status.get("metrics.csv") == "missing":
    return "`metrics.csv` is missing from the workdir"
  return "`metrics.csv` has no rows for the runs shown"


@style.quiet()
def plot(d: Mapping[str, Any] | None) -> Figure | None:
  """The panels side by side (at most 4 a row) with a shared log y axis and one legend."""
  if d is None:
    return None
  panels = d["panels"]
  ncols = min(len(panels), 4)
  nrows = math.ceil(len(panels) / ncols)
  with style.rc():
    fig = style.figure(min(max(7.0, 2.6 * ncols + 0.6), 11.0), 2.5 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    positive, baselines = [], []
    for k, (ax, p) in enumerate(zip(axes, panels, strict=False)):
      lines = p["lines"]
      names = {v: line["name"] for v, line in lines.items()}
      plot_lib.training_curves(
        {names[v]: line["raw"] for v, line in lines.items()},
        {names[v]: line["steps"] for v, line in lines.items()},
        baseline=p["baseline"],
        smooth={names[v]: line["window"] for v, line in lines.items()},
        ax=ax,
        colors={names[v]: line["color"] for v, line in lines.items()},
        legend=False,
        title=p["name"] or "",
        ylabel="training loss (log scale)" if k % ncols == 0 else "",
      )
      for line in lines.values():
        positive += [line["median"], line["raw"]]
      if p["baseline"] is not None:
        baselines.append(p["baseline"])
      style.finish(ax)
    for ax in axes[len(panels) :]:
      ax.set_visible(False)
    # One y range for the shared axes, from every panel's losses and baselines.
    values = np.concatenate([v.ravel() for v in positive]) if positive else np.zeros(0)
    limits = plot_lib.loss_limits(values, baselines)
    if limits is not None:
      axes[0].set_ylim(*limits)
    style.figure_legend(fig, axes[: len(panels)])
    window = max((line["window"] for p in panels for line in p["lines"].values()), default=1)
    note = f"; {d['note']}" if d["note"] else ""
    smooth = f", {window}-point trailing mean" if window > 1 else ""
    fig.suptitle(
      f"{d['task']}: training loss (median over {style.count(d['runs'], 'seed')}{smooth}; "
      f"faint: each seed{note})"
    )
  return fig


def _verdicts(d: Mapping[str, Any], ratios: dict[str, dict[int, float]]) -> str | None:
  """Where each line's median loss ends clearly below the baseline, across the panels."""
  under = f"clearly below the baseline (under {BEATS}×)"
  panel = d["panel"]
  order = [p["value"] for p in d["panels"]]
  names = {p["value"]: p["name"] for p in d["panels"]}
  present = [v for v in order if any(v in by for by in ratios.values())]
  if not ratios:
    return None
  if len(present) <= 1:
    where = f"At {names[present[0]]} the" if present and names[present[0]] else "The"
    yes = [n for n, by in ratios.items() if next(iter(by.values())) < BEATS]
    no = [n for n, by in ratios.items() if next(iter(by.values())) >= BEATS]
    if yes:
      return f"{where} median loss ends {under} for {style.join(yes)}" + (
        f" but not for {style.join(no)}." if no else "."
      )
    return f"{where} median loss of no line ends {under}."
  verdicts = []
  for name, by in ratios.items():
    values = [v for v in order if v in by]
    beats = [v for v in values if by[v] < BEATS]
    if len(beats) == len(values):
      where = (
        f"at every {panel.label} up to {panel.text(values[-1])}"
        if panel.numeric
        else f"at every {panel.label}"
      )
    elif not beats:
      where = f"at no {panel.label}"
    else:
      fails = [v for v in values if v not in beats]
      if panel.numeric and order.index(beats[-1]) < order.index(fails[0]):
        where = f"up to {names[beats[-1]]} but not from {names[fails[0]]} on"
      elif panel.numeric and order.index(fails[-1]) < order.index(beats[0]):
        where = f"from {names[beats[0]]} on but not up to {names[fails[-1]]}"
      else:
        where = f"only at {style.join([names[v] for v in beats])}"
    verdicts.append(f"{name} {where}")
  return f"The median loss ends {under} for {style.join(verdicts)}."


@style.quiet()
def reading(d: Mapping[str, Any]) -> str:
  """Each line's final smoothed loss over the baseline per panel, and which beat it."""
  parts = []
  clip = d["clip"]
  if clip is not None and CLIP in d["fixed"]:
    shown = d["fixed"][CLIP]
    others = ", ".join(clip.text(v) for v in clip.values if v != shown)
    which = "clipping-off" if clip.text(shown) == "off" else "clipping-on"
    parts.append(
      f"The curves show the {which} runs (clip = {clip.text(shown)}; "
      f"also in the data: clip = {others})."
    )
  rest = {p: v for p, v in d["fixed"].items() if p != CLIP}
  if rest:
    shown = ", ".join(item for item in d["note"].split(", ") if not item.startswith(f"{CLIP} = "))
    parts.append(f"The curves show the runs with {shown} (all runs are in the success table).")
  ratios: dict[str, dict[Any, float]] = {}
  texts = []
  for p in d["panels"]:
    items = []
    for line in p["lines"].values():
      finite = np.flatnonzero(np.isfinite(line["median"]))
      if not finite.size:
        items.append(f"{line['name']} diverged")
        continue
      end = float(line["median"][finite[-1]])
      if p["baseline"]:
        ratios.setdefault(line["name"], {})[p["value"]] = end / p["baseline"]
        items.append(f"{line['name']} {style.loss(end / p['baseline'])}×")
      else:
        items.append(f"{line['name']} {style.loss(end)}")
    texts.append((f"{p['name']}: " if p["name"] else "") + ", ".join(items))
  baselines = any(p["baseline"] for p in d["panels"])
  what = "relative to the baseline" if baselines else "(no baseline recorded)"
  parts.append(
    f"Final training loss (median over seeds of the last smoothed value) {what}: "
    + "; ".join(texts)
    + "."
  )
  verdict = _verdicts(d, ratios)
  if verdict:
    parts.append(verdict)
  if d["skipped"]:
    parts.append(
      f"{style.count(d['skipped'], 'value')} of {d['panel'].label} not drawn (at most "
      f"{MAX_PANELS} panels)."
    )
  diverged = [
    (line["name"], p["name"], step)
    for p in d["panels"]
    for line in p["lines"].values()
    for _, step in line["diverged"]
  ]
  total = sum(line["raw"].shape[0] for p in d["panels"] for line in p["lines"].values())
  if diverged:
    where = [
      f"{name}" + (f" at {panel}" if panel else "") + f" (step {step})"
      for name, panel, step in diverged[:8]
    ]
    more = f" and {len(diverged) - 8} more" if len(diverged) > 8 else ""
    parts.append(
      f"{len(diverged)} of the {total} runs shown diverged (non-finite or blown-up training "
      f"loss): {', '.join(where)}{more}; their curves end in a cross."
    )
  else:
    parts.append(
      "The run shown did not diverge."
      if total == 1
      else f"None of the {total} runs shown diverged."
    )
  return " ".join(parts)


__all__ = [
  "BEATS",
  "MAX_PANELS",
  "NAME",
  "TITLE",
  "data",
  "plot",
  "reading",
  "title",
  "why",
]
