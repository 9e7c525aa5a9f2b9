r"""The report's markdown tables: success rate and memory horizon per setting.

One row per value of the grouping axis and of every other varying axis, one
column per value of the x axis (:func:`grid`); every member is in exactly one
entry, nothing is fixed. A horizon a cell could not measure (no
:class:`rnnlab.cells.CellParts`) prints as ``n/a``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rnnlab.report import stats, style
from rnnlab.report.reading import Experiment

# A horizon's column in summary.csv, its censoring flag.
HORIZONS = (
  ("memory_horizon_init", "memory_horizon_init_censored"),
  ("memory_horizon", "memory_horizon_censored"),
)


def per(exp: Experiment) -> str:
  """``"per cell and T"``: what a grid's rows and columns are."""
  names = [a.label for a in (exp.group, exp.x) if a is not None]
  return f"per {' and '.join(names)}" if names else "over all runs"


def grid(exp: Experiment, entry: Callable[[np.ndarray], str]) -> list[str]:
  """A markdown table: a row per group value and other varying axes, a column per x value.

  ``entry(rows)`` writes the entry of one summary row mask (``–`` where it selects none).
  """
  x, group = exp.x, exp.group
  drawn = [a for a in (x, group) if a is not None]
  parts = {p.path for a in drawn for p in a.parts}  # a combined axis's parts: in its labels
  row_axes = ([group] if group is not None else []) + [
    a for a in exp.varying if a not in drawn and a.path not in parts
  ]
  columns = list(x.values) if x is not None else [None]
  header = [a.label for a in row_axes] or ["runs"]
  header += [x.name(v) for v in columns] if x is not None else ["all"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  if row_axes:
    keys = sorted({tuple(int(a.codes[i]) for a in row_axes) for i in range(exp.n)})
  else:
    keys = [()]
  for key in keys:
    rows = np.ones(exp.n, bool)
    for axis, code in zip(row_axes, key, strict=True):
      rows &= axis.codes == code
    entries = []
    for v in columns:
      r = rows if x is None else rows & (x.codes == x.code(v))
      entries.append(entry(r) if r.any() else "–")
    labels = [a.text(a.values[c]) for a, c in zip(row_axes, key, strict=True)] or ["all"]
    lines.append("| " + " | ".join([*labels, *entries]) + " |")
  return lines


@style.quiet()
def success_table(exp: Experiment) -> str:
  """Per setting: ``share (solved/runs) · mean final loss / baseline · k diverged``."""
  if not exp.n or "solved" not in exp.summary:
    return "No success data: `summary.csv` has no rows or no `solved` column."
  ratio = exp.column("final_loss") / exp.column("baseline")
  solved = exp.column("solved") == 1
  diverged = exp.diverged

  def entry(r: np.ndarray) -> str:
    k, n = int(np.sum(solved[r])), int(r.sum())
    # A diverged run is counted as such, not averaged in at the loss it was frozen at.
    finite = ratio[r & ~diverged][np.isfinite(ratio[r & ~diverged])]
    text = f"{style.pct(k / n)} ({k}/{n})"
    if finite.size:
      text += f" · {style.loss(float(np.mean(finite)))}"
    d = int(np.sum(diverged[r]))
    if d:
      text += f" · {d} diverged"
    return text

  caption = (
    "Each entry: the share of runs solved (solved / runs) · the mean held-out final loss "
    "divided by the task's trivial baseline, over the runs that did not diverge (below 1 beats "
    "the trivial predictor)."
  )
  return "\n".join(grid(exp, entry)) + "\n\n" + caption


def _flags(exp: Experiment, column: str) -> np.ndarray:
  return exp.column(column) == 1


@style.quiet()
def horizon_table(exp: Experiment) -> str | None:
  """The memory horizons per setting, censored ones as ``>= L``; None without any measured one."""
  columns = [c for c, _ in HORIZONS]
  if not exp.n or not all(c in exp.summary for c in columns):
    return None
  values = {c: exp.column(c) for c in columns}
  if not any(np.isfinite(v).any() for v in values.values()):
    return None
  flags = {c: _flags(exp, f) for c, f in HORIZONS}

  def text(c: str, r: np.ndarray) -> str:
    value, censored = stats.censored_median(values[c][r], flags[c][r])
    if not np.isfinite(value):
      return "n/a"
    return (">= " if censored else "") + style.g(value)

  def entry(r: np.ndarray) -> str:
    return " → ".join(text(c, r) for c in columns)

  fraction = exp.setting("diagnostics.horizon_fraction")
  share = (
    f"{style.pct(float(fraction))} of its value at lag 0"
    if isinstance(fraction, int | float) and not isinstance(fraction, bool)
    else "a fixed fraction (`diagnostics.horizon_fraction`) of its value at lag 0"
  )
  caption = [
    "Each entry: the memory horizon at initialisation → after training, median over seeds: the "
    f"largest lag T − 1 − t at which ||dL/dh_t|| is still at least {share}.",
    "`>= L` marks a censored horizon: the norm never fell below that fraction within the "
    "lags measured, so the largest lag L is only a lower bound on the horizon (a longer "
    "sequence or a smaller fraction would measure it); a median that takes a censored "
    "horizon is a lower bound too.",
  ]
  measured = [int(np.isfinite(values[c]).sum()) for c in columns]
  censored = [int(np.sum(flags[c] & np.isfinite(values[c]))) for c in columns]
  caption.append(
    f"Censored: {censored[0]} of {measured[0]} horizons at initialisation, {censored[1]} of "
    f"{measured[1]} after training."
  )
  missing = int(np.sum(~np.isfinite(values[columns[0]])))
  if missing:
    caption.append(
      f"`n/a`: {style.count(missing, 'run')} without a horizon (a cell without "
      "`CellParts`, whose diagnostics are not measured)."
    )
  return "\n".join(grid(exp, entry)) + "\n\n" + " ".join(caption)


__all__ = [
  "HORIZONS",
  "grid",
  "horizon_table",
  "per",
  "success_table",
]
