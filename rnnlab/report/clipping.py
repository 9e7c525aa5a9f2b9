r"""What gradient clipping does, when ``clip`` is an axis with a clipping-on value.

Left: how often clipping fires (the mean ``clip_fraction`` of the clipping-on
runs, from ``metrics.csv``'s ``clipped`` where the summary lacks it) against the
x axis, one line per group value. Right: the median held-out final loss over the
baseline, clipping on (solid) and off (dashed); a diverged run counts as an
infinite loss. The clipping-on value is the config's ``clip`` if swept, else the
smallest positive one; other axes are fixed as in the other figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from rnnlab.report import stats, style
from rnnlab.report.reading import CLIP, Experiment

NAME = "clipping"
TITLE = "Gradient clipping"


def title(exp: Experiment) -> str:
  return TITLE


def applies(exp: Experiment) -> bool:
  """Only for an experiment whose ``clip`` axis varies and has a clipping-on value."""
  clip = exp.axis(CLIP)
  return clip is not None and len(clip.values) > 1 and exp.clip_on(clip) is not None


@style.quiet()
def data(exp: Experiment) -> dict[str, Any] | None:
  """Per group value and x value: clipping fraction, loss ratio, solved and diverged, on and off."""
  if not applies(exp) or not exp.n:
    return None
  clip = exp.axis(CLIP)
  x = exp.x if exp.x is not clip else None
  line = exp.group
  if line is clip:  # lines per clip value elsewhere: here, per the next axis that varies
    line = next((a for a in exp.varying if a is not clip and a is not x), None)
  fixed = exp.choose([x, line, clip])
  s = exp.select(fixed)
  on_value = exp.clip_on(clip)
  off_values = [v for v in clip.values if clip.text(v) == "off"]
  on_mask = s & (clip.codes == clip.code(on_value))
  off_mask = s & np.isin(clip.codes, [clip.code(v) for v in off_values])
  fraction = exp.column("clip_fraction")
  m = exp.metrics
  if "clipped" in m and m["member"].size:
    need = np.flatnonzero(~np.isfinite(fraction) & on_mask)
    clipped = np.asarray(m["clipped"], np.float64)
    for i in need:
      rows = exp.metric_rows == i
      if rows.any():
        fraction[i] = float(np.nanmean(clipped[rows]))
  ratio = exp.column("final_loss") / exp.column("baseline")
  ratio[exp.diverged] = np.inf  # the worst outcome, whatever (finite) loss it was frozen at
  solved = exp.column("solved") == 1
  colors = line.colors() if line is not None else {None: style.SPARE_COLORS[0]}
  xs = list(x.values) if x is not None else [None]
  lines: dict[Any, dict[str, Any]] = {}
  for v in line.values if line is not None else [None]:
    base = s if line is None else s & (line.codes == line.code(v))
    if not base.any():
      continue
    per: dict[str, Any] = {
      "name": line.name(v) if line is not None else None,
      "color": colors[v],
      "fraction": {},
      "ratio": {},
      "solved": {},
      "diverged": {},
    }
    for xv in xs:
      at = base if x is None else base & (x.codes == x.code(xv))
      if (at & on_mask).any():
        per["fraction"][xv] = float(np.nanmean(fraction[at & on_mask]))
      for key, mask in (("on", on_mask), ("off", off_mask)):
        rows = at & mask
        if not rows.any():
          continue
        per["ratio"].setdefault(key, {})[xv] = stats.median_inf(ratio[rows])
        per["solved"].setdefault(key, {})[xv] = (int(np.sum(solved[rows])), int(rows.sum()))
        per["diverged"].setdefault(key, {})[xv] = int(np.sum(exp.diverged[rows]))
    lines[v] = per
  if not lines:
    return None
  return {
    "x": x,
    "xs": xs,
    "lines": lines,
    "clip": clip,
    "on": on_value,
    "has_off": bool(off_mask.any()),
    "fixed": fixed,
    "note": exp.fixed_note(fixed),
    "task": exp.task,
  }


def why(exp: Experiment, d: Mapping[str, Any] | None) -> str:
  return "no run had clipping on (clip > 0)"


def _where(d: Mapping[str, Any], xv: Any) -> str:
  return f" at {d['x'].name(xv)}" if d["x"] is not None else ""


@style.quiet()
def plot(d: Mapping[str, Any] | None) -> Figure | None:
  """Left: share of steps clipped; right: median final loss over the baseline, on vs off."""
  if d is None:
    return None
  clip_text = d["clip"].text(d["on"])
  x = d["x"]
  scale = x.scale() if x is not None else style.Scale([None], ["all runs"], False, "")
  with style.rc():
    fig = style.figure(7.0, 3.0)
    ax_f, ax_r = fig.subplots(1, 2)
    ratios = []
    n = len(d["lines"])
    for k, per in enumerate(d["lines"].values()):
      color = per["color"]
      if per["fraction"]:
        keys = [v for v in d["xs"] if v in per["fraction"]]
        x = scale.nudge(scale.positions(keys), k, n)
        y = [per["fraction"][v] for v in keys]
        ax_f.plot(x, y, "o-", ms=4, color=color, label=per["name"] or "all runs")
      for key, ls, marker in (("on", "-", "o"), ("off", "--", "s")):
        by = per["ratio"].get(key, {})
        if not by:
          continue
        keys = [v for v in d["xs"] if v in by]
        y = np.array([by[v] for v in keys])
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
        label = (f"{per['name']}, " if per["name"] else "") + (
          f"clip = {clip_text}" if key == "on" else "no clip"
        )
        x = scale.nudge(scale.positions(keys), k, n)
        ax_r.plot(x, y, ls=ls, marker=marker, ms=4, color=color, label=label)
        ratios.append(y[np.isfinite(y)])
    scale.apply(ax_f)
    fractions = [v for p in d["lines"].values() for v in p["fraction"].values()]
    top = max((v for v in fractions if np.isfinite(v)), default=0.0)
    ax_f.set_ylim(0, min(1.05, max(1.15 * top, 0.01)))
    decimals = 0 if top >= 0.05 else None
    ax_f.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=decimals))
    ax_f.set_ylabel("share of steps clipped")
    ax_f.set_title(f"How often clipping fires (clip = {clip_text})")
    if ax_f.get_legend_handles_labels()[1]:
      ax_f.legend(loc="best")
    else:
      style.no_data(ax_f, "no clipping fraction recorded")
    scale.apply(ax_r)
    ax_r.axhline(1.0, color="black", ls="--", lw=1.0, label="trivial baseline")
    values = np.concatenate(ratios) if ratios else np.zeros(0)
    if values.size:
      ax_r.set_yscale("log")
      lo, hi = min(float(values.min()), 1.0), max(float(values.max()), 1.0)
      ax_r.set_ylim(lo / 2, hi * 2)
    else:
      style.no_data(ax_r, "no finite final losses")
    ax_r.set_ylabel("median final loss / baseline")
    ax_r.set_title("What it changes: held-out loss")
    ax_r.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    for ax in (ax_f, ax_r):
      style.finish(ax)
    note = f"; {d['note']}" if d["note"] else ""
    fig.suptitle(f"{d['task']}: gradient clipping{note}")
  return fig


def reading(d: Mapping[str, Any]) -> str:
  """How often clipping fired, which success rates it changed, divergences, and losses."""
  parts = []
  fired = []
  xs = d["xs"]
  for per in d["lines"].values():
    f = {
      v: per["fraction"][v] for v in xs if v in per["fraction"] and np.isfinite(per["fraction"][v])
    }
    if not f:
      continue
    keys = list(f)
    whose = f"{per['name']} " if per["name"] else ""
    text = f"{style.pct(f[keys[-1]])} of {whose}steps{_where(d, keys[-1])}"
    if len(keys) > 1:
      text += f" ({style.pct(f[keys[0]])}{_where(d, keys[0])})"
    fired.append(text)
  clip = d["clip"].text(d["on"])
  if fired:
    parts.append(f"Clipping (threshold {clip}) fired on {style.join(fired)}.")
  else:
    parts.append(f"No clipping fraction was recorded for the clip = {clip} runs.")
  if not d["has_off"]:
    parts.append("No run had clipping off, so its effect cannot be measured here.")
    return " ".join(parts)
  changes, same = [], 0
  pair = "setting"
  for per in d["lines"].values():
    on, off = per["solved"].get("on", {}), per["solved"].get("off", {})
    for v in [v for v in xs if v in on and v in off]:
      if on[v][0] * off[v][1] != off[v][0] * on[v][1]:
        who = per["name"] or "the runs"
        changes.append(f"{who}{_where(d, v)} from {off[v][0]}/{off[v][1]} to {on[v][0]}/{on[v][1]}")
      else:
        same += 1
  if changes:
    parts.append(
      f"It changed the success rate (off → on) of {style.join(changes)}"
      + (f", and left {style.count(same, 'other ' + pair)} unchanged." if same else ".")
    )
  elif same:
    parts.append(
      f"It changed no success rate ({style.count(same, pair)} compared, each solving the "
      "same share of runs with and without it)."
    )
  div_on = sum(sum(p["diverged"].get("on", {}).values()) for p in d["lines"].values())
  div_off = sum(sum(p["diverged"].get("off", {}).values()) for p in d["lines"].values())
  if div_on or div_off:
    parts.append(f"Runs that diverged: {div_off} without clipping, {div_on} with it.")
  last = xs[-1]
  cmp = []
  for per in d["lines"].values():
    on, off = per["ratio"].get("on", {}), per["ratio"].get("off", {})
    if last in on and last in off:
      who = f"{per['name']} " if per["name"] else ""
      cmp.append(f"{who}{style.ratio(on[last])} vs {style.ratio(off[last])}")
  if cmp:
    where = f"At {d['x'].name(last)} the" if d["x"] is not None else "The"
    parts.append(
      f"{where} median final loss over the baseline, with vs without clipping, is "
      + "; ".join(cmp)
      + "."
    )
  return " ".join(parts)


__all__ = [
  "NAME",
  "TITLE",
  "applies",
  "data",
  "plot",
  "reading",
  "title",
  "why",
]
