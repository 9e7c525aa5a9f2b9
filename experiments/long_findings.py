r"""``python -m experiments.long_findings WORKDIR``: the long experiment's findings against the papers.

Reads the ``summary.csv`` of a run of :mod:`experiments.configs.long` and writes
``findings.md`` next to it: for each finding of the literature the issue names,
what the run measured (per task, T and arm: the runs that solved the task, and
the median held-out loss over the seeds divided by the task's trivial
baseline) and whether the two agree. The rules are fixed here, before looking
at any number:

* an arm *solves* a (task, T) when at least half of its seeds are ``solved``
  (held-out loss below a tenth of the baseline);
* an arm *stays at the baseline* when its median loss ratio is above
  :data:`AT_BASELINE` (it learnt less than half of what there is to learn);
* an arm *goes below the baseline* when its median loss ratio is below
  :data:`BELOW_BASELINE`.

A finding holds where its rule holds at every T of the run; it is *partly*
reproduced where it holds at some; a run without the arms or tasks a finding
needs leaves it *not measured*. JAX-free: it reads the CSV with the standard library.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
from collections.abc import Iterable
from typing import NamedTuple

AT_BASELINE = 0.5  # median loss / baseline above this: at the baseline (learnt < half)
BELOW_BASELINE = 0.5  # median loss / baseline below this: clearly below the baseline
SOLVES = 0.5  # share of seeds solved at or above this: the arm solves the (task, T)
COMMAND = "python -m experiments.run --config=experiments/configs/long.py --workdir=runs/long"


class Row(NamedTuple):
  """One (task, T, arm) of the run: its seeds' outcomes."""

  task: str
  T: int
  arm: str
  seeds: int
  solved: int
  ratio: float  # median over seeds of held-out loss / baseline (nan: every seed diverged)
  diverged: int


class Finding(NamedTuple):
  claim: str
  source: str
  measured: str
  verdict: str


def arm_name(cell: str, floss_weight: str | None) -> str:
  """``elman``, ``lstm``, ...; ``elman_floss`` for a flossed run."""
  weight = float(floss_weight) if floss_weight not in (None, "") else 0.0
  return f"{cell}_floss" if weight > 0 else cell


def read(path: str) -> list[Row]:
  """The rows of ``summary.csv``, grouped by (task, T, arm).

  Raises:
    FileNotFoundError, ValueError: one line: no such file, or not a long-experiment table.
  """
  with open(path, newline="") as f:
    records = list(csv.DictReader(f))
  if not records:
    raise ValueError(f"{path} has no runs")
  need = {"T", "final_loss", "baseline", "solved", "diverged_at"}
  missing = need - set(records[0])
  if missing:
    raise ValueError(f"{path} lacks the columns {sorted(missing)}; is it a runner's summary.csv?")
  config = _config(os.path.dirname(path))
  groups: dict[tuple[str, int, str], list[dict]] = {}
  for r in records:
    task = r.get("task.name") or config.get("task", "?")
    cell = r.get("model.cell") or r.get("cell") or config.get("cell", "?")
    weight = r.get("floss.weight", config.get("floss_weight"))
    groups.setdefault((task, int(r["T"]), arm_name(cell, weight)), []).append(r)
  rows = []
  for (task, T, arm), runs in groups.items():
    ratios = [
      float(r["final_loss"]) / float(r["baseline"])
      for r in runs
      if r["final_loss"] not in ("", "nan") and math.isfinite(float(r["final_loss"]))
    ]
    rows.append(
      Row(
        task,
        T,
        arm,
        len(runs),
        sum(r["solved"] == "True" for r in runs),
        statistics.median(ratios) if ratios else math.nan,
        sum(int(r["diverged_at"]) >= 0 for r in runs),
      )
    )
  return sorted(rows)


def _config(workdir: str) -> dict:
  """The fixed settings a summary has no column for (a run of one task or one cell)."""
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      config = json.load(f)
  except (OSError, ValueError):
    return {}
  return {
    "task": config.get("task", {}).get("name"),
    "cell": config.get("model", {}).get("cell"),
    "floss_weight": str(config.get("floss", {}).get("weight", 0.0)),
  }


def _pick(rows: Iterable[Row], task: str, arm: str) -> list[Row]:
  return [r for r in rows if r.task == task and r.arm == arm]


def _solves(r: Row) -> bool:
  return r.solved >= SOLVES * r.seeds


def _describe(rows: list[Row]) -> str:
  return "; ".join(
    f"T={r.T}: {r.solved}/{r.seeds} solved, loss/baseline {r.ratio:.3g}" for r in rows
  )


VERDICTS = ("agrees", "partly", "disagrees", "not measured")


def _verdict(held: list[bool]) -> str:
  if not held:
    return "not measured"
  if all(held):
    return "agrees"
  return "partly" if any(held) else "disagrees"


def findings(rows: list[Row]) -> list[Finding]:
  """The issue's four findings, each with its measurement and verdict."""
  out = []

  def each(claim, source, task, arms, rule):
    measured, held = [], []
    for arm in arms:
      picked = _pick(rows, task, arm)
      if picked:
        measured.append(f"{arm}: {_describe(picked)}")
        held += [rule(r) for r in picked]
    out.append(Finding(claim, source, " | ".join(measured) or "-", _verdict(held)))

  each(
    "adding: the tanh RNN stays at the baseline 1/6",
    "Le et al. 2015; Arjovsky et al. 2016 (adding problem)",
    "adding",
    ["elman"],
    lambda r: not r.ratio < AT_BASELINE,
  )
  each(
    "adding: the LSTM and the GRU solve it",
    "Le et al. 2015; Arjovsky et al. 2016; Hochreiter & Schmidhuber 1997",
    "adding",
    ["lstm", "gru"],
    _solves,
  )
  each(
    "copy: the LSTM and the GRU plateau at the baseline 10 ln 8 / (T + 20)",
    "Arjovsky et al. 2016 (copying memory problem)",
    "copy",
    ["lstm", "gru"],
    lambda r: not r.ratio < AT_BASELINE,
  )
  each(
    "copy: the orthogonal cell (expRNN) goes below the baseline",
    "Arjovsky et al. 2016; Henaff et al. 2016; Lezcano-Casado & Martinez-Rubio 2019",
    "copy",
    ["exprnn"],
    lambda r: r.ratio < BELOW_BASELINE,
  )
  # Flossing: per task, the longest T the flossed tanh RNN solves against the plain one's.
  measured, held = [], []
  for task in sorted({r.task for r in rows}):
    plain, flossed = _pick(rows, task, "elman"), _pick(rows, task, "elman_floss")
    if not plain or not flossed:
      continue
    longest = [max((r.T for r in rs if _solves(r)), default=0) for rs in (plain, flossed)]
    better = [f.ratio < p.ratio for p, f in zip(plain, flossed, strict=False) if p.T == f.T]
    measured.append(
      f"{task}: longest T solved {longest[0] or 'none'} without, {longest[1] or 'none'} with "
      f"flossing; flossing lowered the median loss at {sum(better)} of {len(better)} T"
    )
    held.append(longest[1] > longest[0])
  out.append(
    Finding(
      "flossing lets the tanh RNN reach longer T than without it",
      "Engelken 2023 (gradient flossing)",
      " | ".join(measured) or "-",
      _verdict(held),
    )
  )
  return out


def markdown(rows: list[Row], found: list[Finding], command: str = COMMAND) -> str:
  """``findings.md``: the rules, the side-by-side table, every (task, T, arm)."""
  md = [
    "# Long dependencies: the papers' findings against this run",
    "",
    f"Rules (fixed in `experiments/long_findings.py`): an arm *solves* a (task, T) when at "
    f"least {SOLVES:.0%} of its seeds are solved (held-out loss below a tenth of the trivial "
    f"baseline); it *stays at the baseline* when its median held-out loss over the seeds is "
    f"above {AT_BASELINE} x the baseline, and *goes below* it under {BELOW_BASELINE} x. A "
    "finding agrees where its rule holds at every T run, partly where at some.",
    "",
    "| finding (paper) | rnnlab measured | agrees? |",
    "|---|---|---|",
  ]
  for f in found:
    md.append(f"| {f.claim} ({f.source}) | {f.measured} | {f.verdict} |")
  md += [
    "",
    "## Every (task, T, arm)",
    "",
    "| task | T | arm | solved | median loss / baseline | diverged |",
    "|---|---|---|---|---|---|",
  ]
  md += [
    f"| {r.task} | {r.T} | {r.arm} | {r.solved}/{r.seeds} | {r.ratio:.3g} | {r.diverged} |"
    for r in rows
  ]
  md += [
    "",
    "Regenerate:",
    "",
    "```",
    command,
    "python -m experiments.long_findings <workdir>",
    "```",
    "",
  ]
  return "\n".join(md)


def write(workdir: str, command: str = COMMAND) -> str:
  """Writes ``findings.md`` into ``workdir`` (atomically) and returns its text."""
  from rnnlab import workdir as workdir_lib  # noqa: PLC0415

  rows = read(os.path.join(workdir, "summary.csv"))
  text = markdown(rows, findings(rows), command)
  workdir_lib.write_text_atomic(os.path.join(workdir, "findings.md"), text)
  return text


def main(argv: list[str]) -> int:
  if len(argv) != 1 or argv[0] in ("-h", "--help"):
    print(
      "usage: python -m experiments.long_findings WORKDIR  (a run of experiments/configs/long.py)"
    )
    return 0 if argv and argv[0] in ("-h", "--help") else 2
  try:
    print(write(argv[0]), end="")
  except (OSError, ValueError) as e:
    print(f"long_findings: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))


__all__ = ["Finding", "Row", "findings", "markdown", "read", "write"]
