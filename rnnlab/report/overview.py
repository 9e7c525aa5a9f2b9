r"""The report's opening: what was run (axes, fixed settings, seeds) and which runs diverged."""

from __future__ import annotations

import numpy as np

from rnnlab.report import style
from rnnlab.report.reading import CELL, CLIP, LENGTH, Experiment


def title(exp: Experiment) -> str:
  task = exp.task
  return "# Sweep report" + (f": the `{task}` task" if task != "sweep" else "")


def _unique(exp: Experiment, column: str) -> list:
  if column not in exp.summary or not exp.n:
    return []
  return list(dict.fromkeys(exp.summary[column].tolist()))


def _fixed(exp: Experiment) -> list[str]:
  """The settings every run shares, among those a reader asks for first."""
  swept = {a.path for a in exp.varying}
  items = []
  if CELL not in swept:
    cells = _unique(exp, "cell")
    if len(cells) == 1:
      cell = str(cells[0])
      items.append(f"the {style.cell_title(cell)}{' (tanh RNN)' if cell == 'elman' else ''} cell")
  hidden = exp.setting("model.hidden_size")
  if "model.hidden_size" not in swept and isinstance(hidden, int):
    items.append(f"{hidden} hidden units")
  if LENGTH not in swept:
    lengths = _unique(exp, "T")
    if len(lengths) == 1:
      items.append(f"T = {int(lengths[0])}")
  name, lr = exp.setting("optimizer.name"), exp.setting("optimizer.learning_rate")
  if "optimizer.name" not in swept and name:
    text = str(name)
    if "optimizer.learning_rate" not in swept and isinstance(lr, int | float):
      text += f" at learning rate {style.g(lr)}"
    items.append(text)
  clip = exp.setting(CLIP)
  if CLIP not in swept and (clip is None or isinstance(clip, int | float)):
    items.append("no clipping" if not clip else f"clipping at {style.g(clip)}")
  batch = exp.setting("batch_size")
  if "batch_size" not in swept and isinstance(batch, int):
    items.append(f"batch size {batch}")
  steps = exp.setting("num_steps")
  if steps is None and "step" in exp.metrics and exp.metrics["step"].size:
    steps = int(np.max(exp.metrics["step"])) + 1
  if "num_steps" not in swept and isinstance(steps, int):
    items.append(f"{steps} steps")
  return items


def _seeds(exp: Experiment) -> str:
  if "seed" not in exp.summary or not exp.n:
    return ""
  if exp.varying:
    keys = np.stack([a.codes for a in exp.varying], 1)
    _, counts = np.unique(keys, axis=0, return_counts=True)
  else:
    counts = np.array([exp.n])
  lo, hi = int(counts.min()), int(counts.max())
  return (
    f"{lo} seed{'s' if lo != 1 else ''} per setting" if lo == hi else f"{lo}–{hi} seeds per setting"
  )


def describe(exp: Experiment, i: int) -> tuple[str, list[str]]:
  """One run as the divergence list names it: ``("Elman T = 5", ["clip off", "seed 1"])``."""
  head = []
  if "cell" in exp.summary:
    head.append(style.cell_name(str(exp.summary["cell"][i])))
  if "T" in exp.summary:
    head.append(f"T = {int(exp.summary['T'][i])}")
  extra = [
    f"{a.label} {a.text(a.values[a.codes[i]])}" for a in exp.varying if a.path not in (CELL, LENGTH)
  ]
  if "seed" in exp.summary:
    extra.append(f"seed {int(exp.summary['seed'][i])}")
  return " ".join(head or ["run"]), extra


def overview(exp: Experiment) -> str:
  """The opening paragraph: runs, task and baseline, axes, seeds, fixed settings, divergence."""
  n = exp.n
  if not n:
    return "`summary.csv` holds no runs, so there is nothing to report."
  preset = exp.setting("preset")
  lead = f"The sweep (preset `{preset}`)" if preset else "The sweep"
  baselines = sorted({float(b) for b in exp.column("baseline") if np.isfinite(b)})
  if len(baselines) == 1:
    base = f" (trivial-predictor baseline loss {style.loss(baselines[0])})"
  elif baselines:
    base = (
      f" (trivial-predictor baseline loss {style.loss(baselines[0])} to "
      f"{style.loss(baselines[-1])})"
    )
  else:
    base = ""
  text = f"{lead} trained {style.count(n, 'run')} on the `{exp.task}` task{base}"
  if exp.varying:
    axes = [
      f"`{a.path}` ({style.join([style.cell_title(v) if a.path == CELL else a.text(v) for v in a.values])})"
      for a in exp.varying
    ]
    text += ", sweeping " + " × ".join(axes)
  seeds = _seeds(exp)
  if seeds:
    text += f", {seeds}"
  parts = [text + "."]
  fixed = _fixed(exp)
  if fixed:
    parts.append(f"Every run: {', '.join(fixed)}.")
  na = ~np.isfinite(exp.column("decay_rate_init"))
  if na.any():
    cells = [style.cell_name(str(c)) for c in dict.fromkeys(exp.summary["cell"][na].tolist())]
    parts.append(
      f"The gradient diagnostics are n/a for {na.sum()} of {n} runs (the {style.join(cells)} "
      f"cell{'s' if len(cells) > 1 else ''}): none is recorded for a cell without `CellParts`."
    )
  diverged = exp.diverged
  if diverged.any():
    items = []
    for i in np.flatnonzero(diverged)[:8]:
      head, extra = describe(exp, int(i))
      step = _step(exp, int(i))
      if step is not None:
        extra.append(f"step {step}")
      items.append(head + (f" ({', '.join(extra)})" if extra else ""))
    more = f" and {int(diverged.sum()) - 8} more" if diverged.sum() > 8 else ""
    parts.append(
      f"{int(diverged.sum())} of {n} runs diverged (non-finite or blown-up loss): "
      f"{'; '.join(items)}{more}."
    )
  else:
    parts.append("The run did not diverge." if n == 1 else f"None of the {n} runs diverged.")
  return " ".join(parts + list(exp.notes))


def _step(exp: Experiment, i: int) -> int | None:
  """The step at which summary row ``i`` diverged, if known."""
  if "member" not in exp.summary:
    return None
  member = int(exp.summary["member"][i])
  if member in exp.divergence:
    return exp.divergence[member]
  m = exp.metrics
  if all(c in m for c in ("step", "loss")):
    rows = exp.metric_rows == i
    bad = rows & ~np.isfinite(np.asarray(m["loss"], np.float64))
    if bad.any():
      return int(np.min(m["step"][bad]))
  return None


__all__ = [
  "describe",
  "overview",
  "title",
]
