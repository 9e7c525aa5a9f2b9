r"""The untrained gain scan: gradient decay rate and largest Lyapunov exponent against the gain.

Present when the experiment ran the scan (``gain_scan.csv``; the opt-in
``config.diagnostics.gain_scan``). One line per cell (median over seeds, min-max
band), a horizontal line at 0 and the Pascanu threshold: the gain where the Elman
cell's ``pascanu_bound`` (:math:`\gamma\,\sigma_{max}(W_{hh})`, median over seeds)
crosses 1, linearly interpolated, as a dashed vertical line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rnnlab.report import stats, style
from rnnlab.report.reading import Experiment

NAME = "decay_vs_gain"
TITLE = "Gradient decay against recurrent gain (untrained)"


def title(exp: Experiment) -> str:
  return TITLE


def applies(exp: Experiment) -> bool:
  """Only when the scan ran: ``gain_scan.csv`` is in the workdir."""
  return exp.status.get("gain_scan.csv") != "missing"


def _by_gain(gains: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
  ux = np.unique(gains)
  med, lo, hi = (np.full(ux.size, np.nan) for _ in range(3))
  for i, x in enumerate(ux):
    v = stats.f64(values[gains == x])
    v = v[np.isfinite(v)]
    if v.size:
      med[i], lo[i], hi[i] = np.median(v), v.min(), v.max()
  return {"gain": ux, "median": med, "lo": lo, "hi": hi}


def _cells(column: np.ndarray) -> list[str]:
  present = list(dict.fromkeys(str(c) for c in column.tolist()))
  return [c for c in style.CELL_ORDER if c in present] + [
    c for c in present if c not in style.CELL_ORDER
  ]


@style.quiet()
def data(exp: Experiment) -> dict[str, Any] | None:
  """Per cell: decay rate, Lyapunov exponent and Pascanu bound by gain (median, min, max)."""
  scan = exp.gain_scan
  if not all(c in scan for c in ("cell", "gain", "decay_rate")) or not scan["gain"].size:
    return None
  s = dict(scan)
  T = None
  if "T" in s and s["T"].size:
    T = int(np.max(s["T"]))
    s = {k: v[s["T"] == T] for k, v in s.items()}
  gains = stats.f64(s["gain"])
  cells = {}
  names = _cells(s["cell"])
  colors = style.colors(names, cells=True)
  for cell in names:
    m = s["cell"] == cell
    d: dict[str, Any] = {"decay": _by_gain(gains[m], s["decay_rate"][m])}
    if "lyapunov" in s:
      d["lyapunov"] = _by_gain(gains[m], s["lyapunov"][m])
    if "pascanu_bound" in s:
      d["pascanu"] = _by_gain(gains[m], s["pascanu_bound"][m])
    d["seeds"] = int(np.unique(s["seed"][m]).size) if "seed" in s else 1
    d["name"], d["color"] = style.cell_name(cell), colors[cell]
    cells[cell] = d
  threshold = None
  elman = cells.get("elman", {}).get("pascanu")
  if elman is not None:
    threshold = stats.crossing(elman["gain"], elman["median"], 1.0)
  drawable = any(
    np.isfinite(d[k]["median"]).any()
    for d in cells.values()
    for k in ("decay", "lyapunov")
    if k in d
  )
  if not drawable:
    return None
  return {
    "T": T,
    "cells": cells,
    "threshold": threshold,
    "task": exp.task,
    "seeds": max(d["seeds"] for d in cells.values()),
  }


def why(exp: Experiment, d: Mapping[str, Any] | None) -> str:
  if exp.status.get("gain_scan.csv") == "empty":
    return "`gain_scan.csv` has no rows"
  return "`gain_scan.csv` holds no finite decay rates or Lyapunov exponents"


@style.quiet()
def plot(d: Mapping[str, Any] | None) -> Figure | None:
  """Untrained decay rate (left) and largest Lyapunov exponent (right) against the gain."""
  if d is None:
    return None
  with style.rc():
    fig = style.figure(7.0, 3.3)
    axes = fig.subplots(1, 2, sharex=True)
    panels = (
      ("decay", "gradient decay rate (per step)", "Decay rate of ||dL/dh_t|| (<0: vanishing)"),
      ("lyapunov", "largest Lyapunov exponent (per step)", "Largest Lyapunov exponent"),
    )
    for ax, (key, ylabel, title) in zip(axes, panels, strict=True):
      drawn = False
      for c in d["cells"].values():
        if key not in c or not np.isfinite(c[key]["median"]).any():
          continue
        v = c[key]
        ax.fill_between(v["gain"], v["lo"], v["hi"], color=c["color"], alpha=0.2, lw=0)
        ax.plot(v["gain"], v["median"], "o-", ms=3.5, color=c["color"], label=c["name"])
        drawn = True
      ax.axhline(0.0, color="0.3", lw=0.8)
      if d["threshold"] is not None:
        ax.axvline(
          d["threshold"],
          color="black",
          ls="--",
          lw=1.0,
          label=rf"Pascanu threshold ($\gamma\,\sigma_{{max}}(W_{{hh}}) = 1$): "
          f"g = {d['threshold']:.2f}",
        )
      if not drawn:
        style.no_data(ax)
      ax.set_xlabel("recurrent gain g (init scale of $W_{hh}$)")
      ax.set_ylabel(ylabel)
      ax.set_title(title)
      style.finish(ax)
    style.figure_legend(fig, axes)
    where = f", T = {d['T']}" if d["T"] is not None else ""
    fig.suptitle(
      f"{d['task']}{where}, untrained: gradient decay against recurrent gain "
      f"(median and min–max over {style.count(d['seeds'], 'seed')})"
    )
  return fig


def _trend(gains: np.ndarray, rates: np.ndarray) -> str:
  """How a per-gain median rate moves over the finite entries (at least one)."""
  ok = np.flatnonzero(np.isfinite(rates))
  i, j = int(ok[0]), int(ok[-1])
  lo, hi = float(np.min(rates[ok])), float(np.max(rates[ok]))
  if hi - lo <= 0.05 * max(abs(lo), abs(hi)) + 1e-3:
    span = (
      f"gains {style.g(gains[i])}–{style.g(gains[j])}" if i != j else f"gain {style.g(gains[i])}"
    )
    return f"stays at about {style.signed(stats.nanmedian(rates))}/step over {span}"
  return (
    f"goes from {style.signed(rates[i])}/step at gain {style.g(gains[i])} to "
    f"{style.signed(rates[j])}/step at gain {style.g(gains[j])}"
  )


def _elman(d: Mapping[str, Any]) -> list[str]:
  """The Elman cell against the Pascanu threshold: vanishing below, exploding possible above."""
  parts = []
  thr, elman = d["threshold"], d["cells"].get("elman")
  if elman is None:
    return parts
  decay = elman["decay"]
  gains, rates = decay["gain"], decay["median"]
  ok = np.isfinite(rates)
  bound = elman.get("pascanu")
  if thr is not None:
    parts.append(
      f"The Elman cell's Pascanu bound γ·σ_max(W_hh) crosses 1 at gain {thr:.2f} "
      "(the Pascanu threshold, dashed): below it vanishing gradients are guaranteed, "
      "above it exploding ones become possible."
    )
    below, above = ok & (gains < thr), ok & (gains > thr)
    if below.any():
      i = int(np.flatnonzero(below)[0])
      if np.all(rates[below] < 0):
        parts.append(
          f"Below gain {thr:.2f} the Elman gradient vanishes at every scanned gain "
          f"(decay {style.signed(rates[i])}/step at gain {style.g(gains[i])}, halving every "
          f"{style.num(style.LN2 / -rates[i])} steps)."
        )
      else:
        parts.append(
          f"Below gain {thr:.2f} the Elman decay rate ranges from "
          f"{style.num(rates[below].min())} to {style.num(rates[below].max())} per step."
        )
    if above.any():
      j = int(np.flatnonzero(above)[-1])
      grow, total = int(np.sum(rates[above] > 0)), int(above.sum())
      at = f"{style.signed(rates[j])}/step at gain {style.g(gains[j])}"
      if grow == 0:
        parts.append(
          f"Above it the Elman gradient still shrinks at every scanned gain ({at}): a bound "
          "above 1 is necessary for exploding gradients, not sufficient."
        )
      elif grow == total:
        parts.append(f"Above it the Elman gradient grows at every scanned gain ({at}).")
      else:
        parts.append(
          f"Above it the Elman gradient grows at {grow} of {total} scanned gains ({at})."
        )
  elif ok.any():
    if bound is not None and np.isfinite(bound["median"]).any():
      side = "below" if np.nanmax(bound["median"]) < 1 else "above"
      parts.append(
        f"The Elman cell's Pascanu bound stays {side} 1 over the scanned gains, so no "
        "threshold is marked."
      )
    parts.append(f"The Elman decay rate {_trend(gains, rates)}.")
  zero = stats.crossing(gains, rates)
  if zero is not None:
    parts.append(f"The measured Elman decay rate crosses 0 at gain {zero:.2f}.")
  return parts


@style.quiet()
def reading(d: Mapping[str, Any]) -> str:
  parts = _elman(d)
  for cell, c in d["cells"].items():
    if cell == "elman" or not np.isfinite(c["decay"]["median"]).any():
      continue
    gated = " (a gated cell: no Pascanu bound)" if cell in ("lstm", "gru") else ""
    parts.append(
      f"The {c['name']}'s decay rate {_trend(c['decay']['gain'], c['decay']['median'])}{gated}."
    )
  na = [c["name"] for c in d["cells"].values() if not np.isfinite(c["decay"]["median"]).any()]
  if na:
    parts.append(f"n/a: {style.join(na)} (no finite decay rate: a cell without `CellParts`).")
  crosses, negative, positive = [], [], []
  for c in d["cells"].values():
    v = c.get("lyapunov")
    if v is None or not np.isfinite(v["median"]).any():
      continue
    zero = stats.crossing(v["gain"], v["median"])
    if zero is not None:
      crosses.append(f"at gain {zero:.2f} for {c['name']}")
    elif np.nanmax(v["median"]) < 0:
      negative.append(c["name"])
    else:
      positive.append(c["name"])
  lyap = []
  if crosses:
    lyap.append(f"crosses 0 (the edge of chaos) {style.join(crosses)}")
  if negative:
    lyap.append(
      f"stays negative (contracting dynamics) at every scanned gain for {style.join(negative)}"
    )
  if positive:
    lyap.append(f"stays at or above 0 (chaotic) at every scanned gain for {style.join(positive)}")
  if lyap:
    parts.append(f"The largest Lyapunov exponent {'; it '.join(lyap)}.")
  if not parts:
    return "The gain scan holds no finite decay rates."
  where = f" at T = {d['T']}" if d["T"] is not None else ""
  head = f"Untrained models{where}, median over {style.count(d['seeds'], 'seed')} per gain."
  return " ".join([head, *parts])


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
