r"""``||dL/dh_t||`` against the lag ``T - 1 - t``, at initialisation and after training.

One line per value of the experiment's ``group`` (each cell, by default), the
median of ``ln ||dL/dh_t||`` over seeds with a min-max band; the other axes are
fixed (``task.length`` to its largest value, ``clip`` to a clipping-on value, the
rest to the config's). Each panel is drawn by :func:`rnnlab.plot.grad_norm_vs_lag`;
the y axis is ``log10`` labelled in powers of ten, so norms far below the float
range keep their tail. A group whose norms are all NaN (a cell without
:class:`rnnlab.cells.CellParts`) is ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rnnlab import plot as plot_lib
from rnnlab.report import stats, style
from rnnlab.report.reading import LENGTH, Experiment

NAME = "grad_vs_lag"
TITLE = "Gradient norm against lag"
PHASES = (("init", "At initialisation"), ("trained", "After training"))
COLUMNS = ("member", "phase", "lag", "log_grad_norm")


def title(exp: Experiment) -> str:
  return TITLE


@style.quiet()
def data(exp: Experiment) -> dict[str, Any] | None:
  """Per phase and group value: the runs x lags matrix of log norms, its median, band and rate.

  Returns:
    ``None`` without a gradients table or members; else ``{"phases":
    {phase: {value: line}}, "na": [values without finite norms], "T", "fixed", ...}``.
  """
  g = exp.gradients
  if not all(c in g for c in COLUMNS) or not exp.n:
    return None
  line = exp.group
  fixed = exp.choose([line])
  sel = exp.select(fixed)
  rows = exp.gradient_rows
  keep = (rows >= 0) & sel[np.maximum(rows, 0)]  # no rows at all: every line is n/a
  values = list(line.values) if line is not None else [None]
  colors = line.colors() if line is not None else {None: style.SPARE_COLORS[0]}
  phases: dict[str, dict[Any, dict[str, Any]]] = {}
  for phase, _ in PHASES:
    per: dict[Any, dict[str, Any]] = {}
    for v in values:
      m = keep & (g["phase"] == phase)
      if line is not None:
        m &= line.codes[np.maximum(rows, 0)] == line.code(v)
      if not m.any():
        continue
      lags, logs = stats.matrix(g["member"][m], g["lag"][m], g["log_grad_norm"][m])
      if not np.any(~np.isnan(logs)):
        continue
      median, lo, hi = plot_lib.median_band(logs)
      per[v] = {
        "name": line.name(v) if line is not None else "all runs",
        "color": colors[v],
        "lags": stats.f64(lags),
        "logs": logs,
        "median": median,
        "lo": lo,
        "hi": hi,
        "rate": stats.nanmedian(plot_lib.decay_rates(logs, lags)),
        "runs": logs.shape[0],
        "underflow": int(np.sum(logs == -np.inf)),
      }
    if per:
      phases[phase] = per
  # A line is n/a when none of its members shown has a norm (NaN rows, or no rows at all).
  measured = np.zeros(exp.n, bool)
  measured[rows[keep & ~np.isnan(np.asarray(g["log_grad_norm"], np.float64))]] = True
  na = []
  for v in values:
    members = sel if line is None else sel & (line.codes == line.code(v))
    if members.any() and not (members & measured).any():
      na.append(line.name(v) if line is not None else "all runs")
  unmeasured = sel & ~measured
  cells = (
    list(dict.fromkeys(exp.summary["cell"][unmeasured].tolist())) if "cell" in exp.summary else []
  )
  Ts = np.unique(exp.summary["T"][sel]) if "T" in exp.summary else np.zeros(0)
  T = int(Ts[0]) if Ts.size == 1 else None
  note_fixed = {p: v for p, v in fixed.items() if not (p == LENGTH and T is not None)}
  return {
    "phases": phases,
    "na": na,
    "na_cells": [style.cell_name(str(c)) for c in cells],
    "T": T,
    "fixed": fixed,
    "note": exp.fixed_note(note_fixed),
    "task": exp.task,
  }


def why(exp: Experiment, d: Mapping[str, Any] | None) -> str:
  if exp.status.get("gradients.csv") == "missing":
    return "`gradients.csv` is missing from the workdir"
  if d is None:
    return "`gradients.csv` lacks its columns, or `summary.csv` has no rows"
  return f"no finite gradient norms were measured ({_na(d)})"


def _na(d: Mapping[str, Any]) -> str:
  """``n/a for the mymod:mycell cell: ...``: who has no finite gradient norm, and why."""
  cells = d["na_cells"]
  who = f"the {style.join(cells)} cell{'s' if len(cells) > 1 else ''}" if cells else "some runs"
  return (
    f"n/a for {who}: a cell without `CellParts` has no gradient diagnostics, or they were "
    "not finite"
  )


@style.quiet()
def plot(d: Mapping[str, Any] | None) -> Figure | None:
  """Two panels, at initialisation and after training: one line per group value.

  Returns:
    The figure, or ``None`` when no group has a finite norm.
  """
  if d is None or not d["phases"]:
    return None
  with style.rc():
    fig = style.figure(7.0, 3.0)
    axes = fig.subplots(1, 2, sharey=True)
    shown = []
    runs = 0
    for ax, (phase, title) in zip(axes, PHASES, strict=True):
      per = d["phases"].get(phase, {})
      labels = {
        v: f"{line['name']}: ×{style.num(math.exp(line['rate']))}/step"
        if np.isfinite(line["rate"])
        else line["name"]
        for v, line in per.items()
      }
      if per:
        plot_lib.grad_norm_vs_lag(
          {labels[v]: line["logs"] for v, line in per.items()},
          {labels[v]: line["lags"] for v, line in per.items()},
          ax=ax,
          colors={labels[v]: line["color"] for v, line in per.items()},
          show_rate=False,
          legend=False,
          title=title,
          ylabel="",
        )
        ax.legend(loc="best", title="median, per-step factor")
      else:
        style.no_data(ax)
        ax.set_title(title)
        ax.set_xlabel("lag T − 1 − t (steps)")
      for line in per.values():
        shown += [line["median"] / style.LN10, line["lo"] / style.LN10, line["hi"] / style.LN10]
        runs = max(runs, line["runs"])
      style.finish(ax)
    axes[0].set_ylabel(r"$\Vert\partial L/\partial h_t\Vert$ (log scale)")
    if shown:
      plot_lib.log10_axis(axes[0], np.concatenate(shown))
    note = f"; {d['note']}" if d["note"] else ""
    where = f", T = {d['T']}" if d["T"] is not None else ""
    fig.suptitle(
      f"{d['task']}{where}: gradient norm against lag "
      f"(median and min–max over {style.count(runs, 'seed')}{note})"
    )
  return fig


def rate_phrase(rate: float) -> str:
  if not np.isfinite(rate):
    return "has too few finite norms to fit a decay rate"
  if rate < -1e-3:
    return (
      f"shrinks by a factor {style.num(math.exp(rate))} per step "
      f"(halves every {style.num(style.LN2 / -rate)} steps)"
    )
  if rate > 1e-3:
    return (
      f"grows by a factor {style.num(math.exp(rate))} per step "
      f"(doubles every {style.num(style.LN2 / rate)} steps)"
    )
  return f"stays about constant across lags (rate {rate:+.1e} per step)"


def _span(line: Mapping[str, Any]) -> str | None:
  """``"10^-17.2 (Elman)"``: the median norm at the largest lag over that at lag 0."""
  median = line["median"]
  if median.size < 2 or not np.isfinite(median[0]):
    return None
  if median[-1] == -np.inf:
    return f"0 (underflow, {line['name']})"
  if not np.isfinite(median[-1]):
    return None
  return f"10^{(median[-1] - median[0]) / style.LN10:.1f} ({line['name']})"


@style.quiet()
def reading(d: Mapping[str, Any]) -> str:
  """Per phase: each group's decay factor and half-life, and the span over the lags."""
  where = f" (T = {d['T']})" if d["T"] is not None else ""
  lines = []
  for phase, title in PHASES:
    per = d["phases"].get(phase)
    if not per:
      lines.append(f"- {title}: no gradient norms were recorded.")
      continue
    clauses, spans, last = [], [], None
    for i, line in enumerate(per.values()):
      subject = f"the {line['name']} gradient" if i == 0 else f"the {line['name']}'s"
      clauses.append(f"{subject} {rate_phrase(line['rate'])}")
      span = _span(line)
      if span is not None:
        spans.append(span)
        last = int(line["lags"][-1])
    text = f"- {title}{where}, {'; '.join(clauses)}."
    if spans:
      text += f" At lag {last} the median norm is {style.join(spans)} of its size at lag 0."
    lines.append(text)
  init, trained = d["phases"].get("init", {}), d["phases"].get("trained", {})
  slower, faster = [], []
  for v, line in init.items():
    if v not in trained:
      continue
    a, b = line["rate"], trained[v]["rate"]
    if not (np.isfinite(a) and np.isfinite(b)) or abs(b - a) <= 0.05 * max(abs(a), 1e-3):
      continue
    (slower if abs(b) < abs(a) else faster).append(line["name"])
  changes = []
  if slower:
    changes.append(f"brought the decay rate of {style.join(slower)} closer to 0")
  if faster:
    changes.append(f"moved the decay rate of {style.join(faster)} further from 0")
  closing = [f"Training {' and '.join(changes)}."] if changes else []
  underflow = sum(line["underflow"] for per in d["phases"].values() for line in per.values())
  if underflow:
    closing.append(
      f"{style.count(underflow, 'norm')} underflowed to 0 (ln = -inf); they are left out of "
      "the fits and bands."
    )
  if d["na"]:
    closing.append(f"No line for {style.join(d['na'])}: {_na(d)}.")
  closing.append(
    "Rates are least-squares slopes of ln ||dL/dh_t|| against the lag, median over seeds"
    + (f" ({d['note']})." if d["note"] else ".")
  )
  return "\n".join(lines) + "\n\n" + " ".join(closing)


__all__ = [
  "COLUMNS",
  "NAME",
  "PHASES",
  "TITLE",
  "data",
  "plot",
  "rate_phrase",
  "reading",
  "title",
  "why",
]
