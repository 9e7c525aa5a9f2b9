r"""The success rate (the share of runs ``solved``) against the x axis, one line per group.

The x axis is the experiment's ``x`` (``task.length`` by default), the lines its
``group`` (``model.cell`` by default); a third axis that varies (``clip`` first,
else the next one with at most four values) gives each line's style (clipping
on: solid, off: dashed); any further axis is fixed to the value
:meth:`~rnnlab.report.reading.Experiment.choose` picks, named in the title.
:func:`data` computes the counts once; :func:`plot` and :func:`reading` use them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rnnlab.report import stats, style
from rnnlab.report.reading import CLIP, Axis, Experiment

NAME = "success_rate"


def title(exp: Experiment) -> str:
  return f"Success rate against {exp.x.label}" if exp.x is not None else "Success rate"


def style_axis(exp: Experiment, *drawn: Axis | None) -> Axis | None:
  """The third axis that styles the lines: ``clip`` if it varies, else the next with <= 4 values."""
  drawn = [a for a in drawn if a is not None]
  paths = {a.path for a in drawn}
  rest = [
    a
    for a in exp.varying
    if a.path not in paths
    and len(a.values) <= len(style.LINE_STYLES)
    and not (drawn and exp.determined(a, drawn))
  ]
  return next((a for a in rest if a.path == CLIP), next(iter(rest), None))


def style_values(axis: Axis | None) -> list[Any]:
  """The style axis's values in drawing order; for ``clip``: the on values, then off."""
  if axis is None:
    return [None]
  if axis.path == CLIP:
    off = [v for v in axis.values if v is None or v == 0]
    return [v for v in axis.values if v not in off] + off
  return list(axis.values)


def style_label(axis: Axis | None, value: Any) -> str:
  if axis is None:
    return "all runs"
  if axis.path == CLIP:
    return "no clipping" if axis.text(value) == "off" else f"clip = {axis.text(value)}"
  return axis.name(value)


def style_of(axis: Axis | None, value: Any) -> tuple[str, str]:
  """``(linestyle, marker)`` of a style value: clipping off dashed, on solid."""
  if axis is None:
    return style.LINE_STYLES[0]
  if axis.path == CLIP:
    return style.LINE_STYLES[1] if axis.text(value) == "off" else style.LINE_STYLES[0]
  return style.LINE_STYLES[style_values(axis).index(value) % len(style.LINE_STYLES)]


@style.quiet()
def data(exp: Experiment) -> dict[str, Any] | None:
  """Per (style value, group value): per x value, runs solved, runs, median steps to solve.

  Returns:
    ``None`` without rows or a ``solved`` column; else ``{"x", "group", "style",
    "series": [{"group", "style", "xs", "solved", "runs", "steps"}], "fixed"}``.
  """
  if not exp.n or "solved" not in exp.summary:
    return None
  third = style_axis(exp, exp.x, exp.group)
  fixed = exp.choose([exp.x, exp.group, third], clip=third is None)
  base = exp.select(fixed)
  solved = np.asarray(exp.summary["solved"], np.float64) == 1
  steps_col = exp.column("steps_to_solve")
  series = []
  for s in style_values(third):
    in_style = base if third is None else base & (third.codes == third.code(s))
    for v in exp.group.values if exp.group is not None else [None]:
      rows = in_style if exp.group is None else in_style & (exp.group.codes == exp.group.code(v))
      if not rows.any():
        continue
      xs, k, n, steps = [], [], [], []
      for xv in exp.x.values if exp.x is not None else [None]:
        r = rows if exp.x is None else rows & (exp.x.codes == exp.x.code(xv))
        if not r.any():
          continue
        st = steps_col[r]
        xs.append(xv)
        k.append(int(np.sum(solved[r])))
        n.append(int(r.sum()))
        steps.append(stats.nanmedian(st[st >= 0]))
      series.append({"group": v, "style": s, "xs": xs, "solved": k, "runs": n, "steps": steps})
  return {
    "x": exp.x,
    "group": exp.group,
    "style": third,
    "series": series,
    "fixed": fixed,
    "note": exp.fixed_note(fixed),
    "task": exp.task,
  }


def why(exp: Experiment, d: Mapping[str, Any] | None) -> str:
  if d is None:
    return "`summary.csv` has no rows or no `solved` column"
  return "no axis takes two or more values, so the success rate has nothing to vary against"


def series_label(d: Mapping[str, Any], series: Mapping[str, Any]) -> str:
  group, third = d["group"], d["style"]
  label = group.name(series["group"]) if group is not None else "all runs"
  if third is not None:
    label = (
      f"{label}, {style_label(third, series['style'])}"
      if group is not None
      else (style_label(third, series["style"]))
    )
  return label


def legend_handles(d: Mapping[str, Any], colors: Mapping[Any, str]) -> dict[str, Any] | None:
  """With both a group and a style axis: an entry per colour and one per line style.

  ``4 schemes x 3 cells`` is 7 entries instead of 12 combined labels. ``None``
  when the lines have one axis (their own labels are the legend).
  """
  group, third = d["group"], d["style"]
  if group is None or third is None:
    return None
  seen_groups = list(dict.fromkeys(s["group"] for s in d["series"]))
  seen_styles = list(dict.fromkeys(s["style"] for s in d["series"]))
  handles = {group.name(v): Line2D([], [], color=colors[v], lw=1.5) for v in seen_groups}
  for v in seen_styles:
    ls, marker = style_of(third, v)
    handles[style_label(third, v)] = Line2D([], [], color="0.35", ls=ls, marker=marker, ms=4)
  return handles


@style.quiet()
def plot(d: Mapping[str, Any] | None) -> Figure | None:
  """The share of runs solved against ``x``: a colour per group, a line style per third axis.

  Points of different groups are nudged sideways so equal rates stay visible; the
  number of runs per point is in the legend's title (or at each point when it varies).

  Returns:
    The figure, or ``None`` without data or without an x axis (nothing varies).
  """
  if d is None or d["x"] is None or not d["series"]:
    return None
  x, group = d["x"], d["group"]
  scale = x.scale()
  colors = group.colors() if group is not None else {None: style.SPARE_COLORS[0]}
  if x.path == "model.cell" and group is None:
    colors = {None: "0.2"}
  groups = list(group.values) if group is not None else [None]
  with style.rc():
    width = 4.2 if scale.numeric or len(x.values) <= 4 else 4.2 + 0.35 * (len(x.values) - 4)
    fig = style.figure(width, 3.2)
    ax = fig.subplots()
    counts = {n for s in d["series"] for n in s["runs"]}
    for s in d["series"]:
      ls, marker = style_of(d["style"], s["style"])
      if not scale.numeric:
        ls = ":" if ls == "-" else ls
      xs = scale.nudge(scale.positions(s["xs"]), groups.index(s["group"]), len(groups))
      rate = np.array(s["solved"]) / np.maximum(np.array(s["runs"]), 1)
      ax.plot(
        xs, rate, ls=ls, marker=marker, ms=4, color=colors[s["group"]], label=series_label(d, s)
      )
      if len(counts) > 1:
        for xi, ri, n in zip(xs, rate, s["runs"], strict=True):
          ax.annotate(f"n={n}", (xi, ri), textcoords="offset points", xytext=(3, 3), fontsize=6)
    scale.apply(ax)
    ax.set_ylim(-0.04, 1.04)
    ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    ax.set_ylabel("success rate (share of runs solved)")
    title = (
      f"{style.count(counts.pop(), 'seed')} per point"
      if len(counts) == 1
      else "n = seeds per point"
    )
    handles = legend_handles(d, colors)
    if handles is None:  # a line per group (or per style value): their labels
      handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    if len(handles) <= 6:
      owner, place = ax, dict(loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:  # many lines: below the axes, in columns, so the plot keeps its width
      fig.set_figheight(3.2 + 0.16 * math.ceil(len(handles) / 3))
      owner, place = fig, dict(loc="outside lower center", ncol=3)
    owner.legend(list(handles.values()), list(handles), title=title, title_fontsize=7.5, **place)
    note = f" ({d['note']})" if d["note"] else ""
    ax.set_title(f"{d['task']}: success rate against {x.label}{note}")
    style.finish(ax)
  return fig


def _steps_phrase(x: Axis | None, s: Mapping[str, Any]) -> str:
  solved_steps = [(v, t) for v, t in zip(s["xs"], s["steps"], strict=True) if np.isfinite(t)]
  if not solved_steps:
    return ""
  v, t = solved_steps[-1]
  return f", in a median of {style.num(t)} steps" + (f" at {x.name(v)}" if x is not None else "")


def phrase(x: Axis | None, s: Mapping[str, Any]) -> str:
  """What one line says: ``solves every run up to T = 5 and none from T = 10 on (2/2, ...)``."""
  xs, k, n = s["xs"], s["solved"], s["runs"]
  rates = [a / b if b else 0.0 for a, b in zip(k, n, strict=True)]
  counts = ", ".join(f"{a}/{b}" for a, b in zip(k, n, strict=True))
  names = [x.name(v) for v in xs] if x is not None else []
  if len(xs) <= 1:
    where = f" at {names[0]}" if names else ""
    if k[0] == n[0]:
      return f"solves every run{where} ({counts})" + _steps_phrase(x, s)
    if not k[0]:
      return f"solves no run{where} ({counts})"
    return f"solves {k[0]} of {n[0]} runs{where}" + _steps_phrase(x, s)
  label = x.label
  texts = [x.text(v) for v in xs]
  ordered = x.numeric
  if all(a == b for a, b in zip(k, n, strict=True)):
    text = f"solves every run at every {label} up to {texts[-1]}" if ordered else "solves every run"
  elif not any(k):
    text = f"solves no run at any {label}"
  else:
    text = f"solves {sum(k)} of {sum(n)} runs"
    for j in range(1, len(xs)) if ordered else ():
      head, tail = rates[:j], rates[j:]
      up, on = f"up to {names[j - 1]}", f"from {names[j]} on"
      if all(r == 1 for r in head) and all(r == 0 for r in tail):
        text = f"solves every run {up} and none {on}"
      elif all(r >= 0.5 for r in head) and all(r == 0 for r in tail):
        text = f"solves at least half the runs {up} and none {on}"
      elif all(r >= 0.5 for r in head) and all(r < 0.5 for r in tail):
        text = f"solves at least half the runs {up} and fewer than half {on}"
      elif all(r > 0 for r in head) and all(r == 0 for r in tail):
        text = f"solves some runs {up} and none {on}"
      elif all(r == 0 for r in head) and all(r == 1 for r in tail):
        text = f"solves no run {up} and every run {on}"
      elif all(r == 0 for r in head) and all(r >= 0.5 for r in tail):
        text = f"solves no run {up} and at least half the runs {on}"
      elif all(r == 0 for r in head) and all(r > 0 for r in tail):
        text = f"solves no run {up} and some runs {on}"
      else:
        continue
      break
  if ordered:
    text += f" ({counts} at {label} = {', '.join(texts)})"
  else:
    text += (
      " (" + ", ".join(f"{c} at {m}" for c, m in zip(counts.split(", "), names, strict=True)) + ")"
    )
  return text + _steps_phrase(x, s)


def _head(third: Axis | None, value: Any) -> str:
  if third is None:
    return "All runs"
  if third.path == CLIP:
    text = third.text(value)
    return "Without clipping" if text == "off" else f"With clipping (clip = {text})"
  return third.name(value)


def reading(d: Mapping[str, Any]) -> str:
  """One bullet per line style (e.g. with and without clipping), a sentence per group."""
  x, group, third = d["x"], d["group"], d["style"]
  lines = []
  for value in style_values(third):
    series = [s for s in d["series"] if s["style"] == value]
    if not series:
      continue
    items = []
    for s in series:
      subject = group.name(s["group"]) if group is not None else "The sweep"
      items.append(f"{subject} {phrase(x, s)}.")
    lines.append(f"- {_head(third, value)}: {' '.join(items)}")
  text = "\n".join(lines)
  if not sum(sum(s["solved"]) for s in d["series"]):
    text += "\n\nNo run solved the task" + (f" at any {x.label}." if x is not None else ".")
  if d["fixed"]:
    text += f"\n\nShown: {d['note']}; the other runs are in the success table."
  return text


__all__ = [
  "NAME",
  "data",
  "legend_handles",
  "phrase",
  "plot",
  "reading",
  "series_label",
  "style_axis",
  "style_label",
  "style_of",
  "style_values",
  "title",
  "why",
]
