"""experiments.long_findings: its rules on hand-made tables (no JAX, no run)."""

from __future__ import annotations

import csv
import math
import os

import pytest

from experiments import long_findings as lf

COLUMNS = ("task.name", "model.cell", "floss.weight", "T", "final_loss", "baseline", "solved")


def write_summary(path, runs):
  """``runs``: (task, cell, floss weight, T, loss / baseline, solved) per seed."""
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([*COLUMNS, "diverged_at"])
    for task, cell, weight, T, ratio, solved in runs:
      baseline = 1 / 6 if task == "adding" else 10 * math.log(8) / (T + 20)
      loss = "nan" if ratio is None else repr(ratio * baseline)
      w.writerow([task, cell, weight, T, loss, repr(baseline), solved, -1 if ratio else 5])


def seeds(task, cell, T, ratios, weight=0.0, solved=None):
  return [
    (task, cell, weight, T, r, str(solved if solved is not None else r is not None and r < 0.1))
    for r in ratios
  ]


@pytest.fixture
def workdir(tmp_path):
  runs = (
    seeds("adding", "elman", 100, [1.0, 0.98, 0.99])
    + seeds("adding", "elman", 200, [1.0, 1.01, 0.4])
    + seeds("adding", "elman", 100, [0.01, 0.02, 0.5], weight=0.1)
    + seeds("adding", "elman", 200, [0.9, 0.95, 1.0], weight=0.1)
    + seeds("adding", "lstm", 100, [0.01, 0.02, 0.05])
    + seeds("adding", "lstm", 200, [0.01, 0.9, 1.0])
    + seeds("copy", "lstm", 100, [0.3, 0.4, 0.35])
    + seeds("copy", "exprnn", 100, [0.01, 0.02, None])
  )
  write_summary(tmp_path / "summary.csv", runs)
  return str(tmp_path)


def test_rows_group_seeds_by_task_length_and_arm_with_the_median_ratio(workdir):
  rows = {(r.task, r.T, r.arm): r for r in lf.read(os.path.join(workdir, "summary.csv"))}
  assert len(rows) == 8
  floss = rows["adding", 100, "elman_floss"]
  assert (floss.seeds, floss.solved) == (3, 2) and floss.ratio == pytest.approx(0.02)
  assert rows["adding", 200, "elman"].ratio == pytest.approx(1.0)
  # A diverged seed (no finite loss) is left out of the median and counted.
  exprnn = rows["copy", 100, "exprnn"]
  assert exprnn.ratio == pytest.approx(0.015) and exprnn.diverged == 1


def test_each_finding_follows_its_rule_at_every_length(workdir):
  verdicts = [f.verdict for f in lf.findings(lf.read(os.path.join(workdir, "summary.csv")))]
  # elman at the baseline at both T; LSTM solves T=100 not 200 (GRU absent);
  # copy: LSTM below half the baseline at T=100 (disagrees); expRNN below; flossing
  # solves T=100 where plain elman solves none.
  assert verdicts == ["agrees", "partly", "disagrees", "agrees", "agrees"]


def test_a_finding_without_its_arms_is_not_measured(tmp_path):
  write_summary(tmp_path / "summary.csv", seeds("adding", "gru", 100, [0.01, 0.02]))
  verdicts = [f.verdict for f in lf.findings(lf.read(str(tmp_path / "summary.csv")))]
  assert verdicts == ["not measured", "agrees", "not measured", "not measured", "not measured"]


def test_the_command_writes_findings_md_and_fails_in_one_line(workdir, tmp_path, capsys):
  assert lf.main([workdir]) == 0
  with open(os.path.join(workdir, "findings.md")) as f:
    assert "| adding | 100 | elman_floss | 2/3 | 0.02 | 0 |" in f.read()
  empty = tmp_path / "empty"
  empty.mkdir()
  assert lf.main([str(empty)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("long_findings: error:") and "summary.csv" in err and "\n" not in err
  assert lf.main([]) == 2
