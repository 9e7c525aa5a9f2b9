"""The sweep report: typed CSV reading, every figure written, readings computed from the data.

A synthetic workdir stands in for a sweep: 3 cells x 2 T x 2 clips x 2 seeds,
where the LSTM solves every run, the Elman cell none and the GRU only the
shorter T; gradients decay at known exact rates (``ln ||dL/dh_t|| = rate * lag``),
the memory horizons are those rates' (censored where the window ends first) and
the gain scan's Elman Pascanu bound equals the gain.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings

import numpy as np
import pytest

from rnnlab import report, sweep

CELLS = ("elman", "lstm", "gru")
TS = (5, 10)
CLIPS = (0.0, 1.0)
SEEDS = (0, 1)
STEPS = 30
BASELINE = 1 / 6
RATES = {"elman": -0.5, "lstm": -0.1, "gru": -0.3}  # ln-norm slope per step at init
GAINS = (0.5, 0.8, 1.25, 2.0)  # the Pascanu threshold (gain 1) lies between grid points
FRACTION = 0.1  # diagnostics.horizon_fraction of the synthetic sweep

# The schema as the sweep writes it (the report must read what the runner writes).
SUMMARY = list(sweep.SUMMARY_COLUMNS)
MEMBER = list(sweep.MEMBER_COLUMNS)
METRICS = [*MEMBER, "step", *sweep.METRIC_COLUMNS]
GRADIENTS = [*MEMBER, "phase", "lag", "log_grad_norm"]
GAIN_SCAN = list(sweep.GAIN_SCAN_COLUMNS)


def fmt(value):
  """As the sweep writes values: bools True/False, floats with '.9g'."""
  if isinstance(value, bool | np.bool_):
    return str(bool(value))
  if isinstance(value, float | np.floating):
    return format(float(value), ".9g")
  return str(value)


def write_csv(path, columns, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([fmt(v) for v in row] for row in rows)


BLOWN_UP = 5e9  # a finite blow-up's loss (Adam at learning rate 1e4 on the adding task)


def horizon(rate, T):
  """The memory horizon of ``ln ||dL/dh_t|| = rate * lag`` over lags 0..T-1, and if censored.

  Written from the definition (the largest lag whose norm is at least FRACTION of
  lag 0's), apart from rnnlab.diagnostics.memory_horizon.
  """
  reach = math.floor(math.log(FRACTION) / rate)
  return min(reach, T - 1), reach >= T - 1


def make_workdir(path, diverge=False, gain_scan=True, blow_up=None, flags=True):
  """Writes the synthetic sweep tables into ``path``.

  ``flags``: False writes ``summary.csv`` without the ``*_censored`` columns (as
  the runner did before it had them).

  ``diverge``: one Elman run (T = 5, clip 0, seed 1) goes non-finite at step 20.
  ``blow_up``: one Elman run (T = 10, clip 1, seed 0) blows up finitely from step 10
  on (loss ``BLOWN_UP``), marked diverged (``"flagged"``: ``diverged_at`` = 10 and the
  per-step ``diverged`` record) or not (``"unflagged"``: as a run with the rule off).
  """
  rng = np.random.default_rng(0)
  short = min(TS)
  summary, metrics, gradients = [], [], []
  member = 0
  for cell in CELLS:
    for T in TS:
      for clip in CLIPS:
        for seed in SEEDS:
          solves = cell == "lstm" or (cell == "gru" and short == T)
          steps = np.arange(STEPS)
          noise = 1 + 0.05 * rng.standard_normal(STEPS)
          loss = BASELINE * (np.exp(-steps / 5) + 0.003 if solves else np.ones(STEPS)) * noise
          diverged_at = -1
          if diverge and cell == "elman" and short == T and clip == 0 and seed == 1:
            diverged_at = 20
            loss[diverged_at:] = np.nan
          if blow_up and cell == "elman" and short != T and clip == 1 and seed == 0:
            loss[10:] = BLOWN_UP
            diverged_at = 10 if blow_up == "flagged" else -1
          final = float(loss[-1]) if np.isfinite(loss[-1]) else math.nan
          fraction = {"elman": 0.25, "lstm": 0.05, "gru": 0.1}[cell] if clip else 0.0
          rate = RATES[cell]
          (h_init, c_init), (h_trained, c_trained) = horizon(rate, T), horizon(rate / 2, T)
          summary.append(
            dict(
              member=member,
              group=f"{cell}_T{T}",
              cell=cell,
              task="adding",
              T=T,
              hidden=8,
              gain=1.0,
              lr=0.002,
              clip=clip,
              seed=seed,
              final_loss=final,
              final_metric=final,
              initial_loss=1.0,
              baseline=BASELINE,
              solved=solves,
              steps_to_solve=12 if solves else -1,
              diverged_at=diverged_at,
              clip_fraction=fraction,
              decay_rate_init=rate,
              decay_rate=rate / 2,
              memory_horizon_init=h_init,
              memory_horizon_init_censored=c_init,
              memory_horizon=h_trained,
              memory_horizon_censored=c_trained,
              spectral_radius_init=1.0,
              spectral_radius=1.1,
              lyapunov_init=-0.2,
              lyapunov=-0.1,
            )
          )
          for s in steps:
            clipped = bool(clip) and rng.random() < fraction
            ident = [member, cell, T, 1.0, 0.002, clip, seed]
            nonfinite = not np.isfinite(loss[s])
            rejected = nonfinite or 0 <= diverged_at <= s
            row = [*ident, s, loss[s], loss[s], 1.0, clipped, nonfinite, rejected, 0.002]
            metrics.append(row)
          for phase, r in (("init", rate), ("trained", rate / 2)):
            for lag in range(T):
              gradients.append(
                [member, cell, T, 1.0, 0.002, clip, seed, phase, lag, r * lag - seed]
              )
          member += 1
  columns = [c for c in SUMMARY if flags or not c.endswith("_censored")]
  write_csv(os.path.join(path, "summary.csv"), columns, [[r[c] for c in columns] for r in summary])
  write_csv(os.path.join(path, "metrics.csv"), METRICS, metrics)
  write_csv(os.path.join(path, "gradients.csv"), GRADIENTS, gradients)
  if gain_scan:
    scan = []
    for cell in CELLS:
      for gain in GAINS:
        for seed in SEEDS:
          decay = math.log(gain) - 0.1 if cell == "elman" else -0.1 - 0.01 * seed
          bound = gain if cell == "elman" else math.nan
          scan.append([cell, TS[-1], gain, seed, decay, 4, gain, gain, bound, decay + 0.05])
    write_csv(os.path.join(path, "gain_scan.csv"), GAIN_SCAN, scan)
  config = {
    "preset": "quick",
    "task": {"name": "adding", "kwargs": {}},
    "model": {"hidden_size": 8, "gain": 1.0},
    "train": {"optimizer": "adam", "learning_rate": 0.002, "num_steps": STEPS, "clip": 1.0},
    "sweep": {"cell": list(CELLS), "T": list(TS), "clip": list(CLIPS), "seeds": len(SEEDS)},
    "diagnostics": {"horizon_fraction": FRACTION},
  }
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  return path


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  """The synthetic workdir and its report in PNG and SVG: ``(workdir, paths, report text)``."""
  workdir = make_workdir(str(tmp_path_factory.mktemp("full")))
  paths = report.write_report(workdir, formats=("png", "svg"), dpi=50)
  with open(os.path.join(workdir, "report.md")) as f:
    return workdir, paths, f.read()


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
  """One diverged run (NaN losses) and no gain_scan.csv; written with warnings as errors."""
  workdir = make_workdir(str(tmp_path_factory.mktemp("broken")), diverge=True, gain_scan=False)
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    paths = report.write_report(workdir, formats=("png",), dpi=50)
  noisy = [f"{w.category.__name__}: {w.message}" for w in record]
  with open(os.path.join(workdir, "report.md")) as f:
    return workdir, paths, f.read(), noisy


def blown_report(tmp_path_factory, kind):
  workdir = make_workdir(str(tmp_path_factory.mktemp(kind)), blow_up=kind)
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    report.write_report(workdir, formats=("png",), dpi=50)
  assert not record, [f"{w.category.__name__}: {w.message}" for w in record]
  with open(os.path.join(workdir, "report.md")) as f:
    return f.read()


@pytest.fixture(scope="module")
def blown_flagged(tmp_path_factory):
  """report.md of a sweep where one run blew up finitely and was marked diverged."""
  return blown_report(tmp_path_factory, "flagged")


@pytest.fixture(scope="module")
def blown_unflagged(tmp_path_factory):
  """report.md of a sweep where one run blew up finitely, not marked (the rule was off)."""
  return blown_report(tmp_path_factory, "unflagged")


# ---------------------------------------------------------------------------
# read_table.
# ---------------------------------------------------------------------------


def test_read_table_round_trips_types(tmp_path):
  path = tmp_path / "t.csv"
  path.write_text(
    "member,cell,gain,loss,solved,extra_int,extra_float,extra_bool,extra_str\n"
    "0,elman,1,nan,True,7,-inf,False,a b\n"
    "1,lstm,0.5,inf,False,-3,2.5e-300,True,x\n"
  )
  t = report.read_table(path)
  assert list(t) == path.read_text().splitlines()[0].split(",")
  assert t["member"].dtype == np.int64 and t["member"].tolist() == [0, 1]
  assert t["extra_int"].dtype == np.int64 and t["extra_int"].tolist() == [7, -3]
  # A known float column stays float even when every value prints as an integer.
  assert t["gain"].dtype == np.float64 and t["gain"].tolist() == [1.0, 0.5]
  assert np.isnan(t["loss"][0]) and t["loss"][1] == np.inf
  assert t["extra_float"].dtype == np.float64
  assert t["extra_float"][0] == -np.inf and t["extra_float"][1] == 2.5e-300
  assert t["solved"].dtype == np.bool_ and t["solved"].tolist() == [True, False]
  assert t["extra_bool"].dtype == np.bool_ and t["extra_bool"].tolist() == [False, True]
  assert t["cell"].dtype.kind == "U" and t["cell"].tolist() == ["elman", "lstm"]
  assert t["extra_str"].tolist() == ["a b", "x"]


def test_read_table_header_only_missing_and_ragged(tmp_path):
  empty = tmp_path / "empty.csv"
  empty.write_text(",".join(GAIN_SCAN) + "\n")
  t = report.read_table(empty)
  assert list(t) == GAIN_SCAN and all(v.shape == (0,) for v in t.values())
  assert t["T"].dtype == np.int64 and t["gain"].dtype == np.float64
  missing = tmp_path / "nope.csv"
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
    report.read_table(missing)
  ragged = tmp_path / "ragged.csv"
  ragged.write_text("a,b\n1,2\n3\n")
  with pytest.raises(ValueError, match="line 3"):
    report.read_table(ragged)


def test_read_table_reads_what_the_generator_wrote(full):
  workdir, _, _ = full
  s = report.read_table(os.path.join(workdir, "summary.csv"))
  assert list(s) == SUMMARY and s["member"].tolist() == list(range(24))
  assert s["clip"].dtype == np.float64 and s["solved"].dtype == np.bool_
  g = report.read_table(os.path.join(workdir, "gradients.csv"))
  assert set(g["phase"].tolist()) == {"init", "trained"}


# ---------------------------------------------------------------------------
# Figures and the report.
# ---------------------------------------------------------------------------


def test_write_report_writes_every_figure_in_every_format(full):
  workdir, paths, text = full
  expected = [
    os.path.join(workdir, "figures", f"{name}.{fmt}")
    for name in report.FIGURES
    for fmt in ("png", "svg")
  ]
  assert paths == [*expected, os.path.join(workdir, "report.md")]
  for name in report.FIGURES:
    with open(os.path.join(workdir, "figures", f"{name}.png"), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(workdir, "figures", f"{name}.svg")) as f:
      assert "<svg" in f.read()
    assert f"](figures/{name}.png)" in text and f"(figures/{name}.svg)" in text
  leftovers = [f for f in os.listdir(os.path.join(workdir, "figures")) if f.endswith(".tmp")]
  assert not leftovers


def section(text, heading):
  """The lines of report.md's section ``## <heading>``, up to the next heading."""
  lines = text.splitlines()
  start = lines.index(f"## {heading}") + 1
  end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
  return lines[start:end]


def table_rows(text, cell, heading="Success rate per cell and T"):
  return [line for line in section(text, heading) if line.startswith(f"| {cell} |")]


def test_report_success_table(full):
  _, _, text = full
  assert "| cell | clip | T = 5 | T = 10 |" in text
  for cell, at in (("LSTM", ("100%", "100%")), ("Elman", ("0%", "0%")), ("GRU", ("100%", "0%"))):
    rows = table_rows(text, cell)
    assert len(rows) == 2  # clip off and clip 1
    for row in rows:
      entries = [e.strip() for e in row.strip("|").split("|")][2:]
      solved = "2/2" if at[0] == "100%" else "0/2"
      assert entries[0].startswith(f"{at[0]} ({solved})")
      solved = "2/2" if at[1] == "100%" else "0/2"
      assert entries[1].startswith(f"{at[1]} ({solved})")


def test_report_readings_are_computed(full):
  _, _, text = full
  # Gradient decay at init: exp(rate) per step, halving every ln 2 / -rate steps.
  for rate in RATES.values():
    halving = f"{math.log(2) / -rate:.3g}"
    assert f"by a factor {math.exp(rate):.3g} per step (halves every {halving} steps)" in text
  assert "the Elman gradient shrinks by a factor 0.607 per step (halves every 1.39 steps)" in text
  assert "At lag 9 the median norm is 10^-2.0 (Elman), 10^-0.4 (LSTM) and 10^-1.2 (GRU)" in text
  # After training the rates halve: the Elman norm halves every 2.77 steps.
  assert f"halves every {math.log(2) / 0.25:.3g} steps" in text
  assert "brought the decay rate of Elman, LSTM and GRU closer to 0" in text
  # The Pascanu bound = gain crosses 1 at gain 1, between the grid points 0.8 and 1.25.
  assert "crosses 1 at gain 1.00" in text
  # The Elman decay rate ln(g) - 0.1, linearly interpolated between 0.8 and 1.25.
  y0, y1 = math.log(0.8) - 0.1, math.log(1.25) - 0.1
  assert f"decay rate crosses 0 at gain {0.8 - y0 * 0.45 / (y1 - y0):.2f}" in text
  assert "(decay -0.793/step at gain 0.5" in text  # ln(0.5) - 0.1
  assert "grows at every scanned gain (+0.593/step at gain 2)" in text  # ln(2) - 0.1
  assert "The LSTM's decay rate stays at about -0.105/step over gains 0.5–2" in text
  assert "LSTM solves every run at every T up to 10" in text
  assert "Elman solves no run at any T" in text
  assert "GRU solves every run up to T = 5 and none from T = 10 on" in text
  assert "Clipping (threshold 1) fired on 25% of Elman steps at T = 10" in text
  assert "None of the 24 runs diverged." in text
  assert "Figure skipped" not in text


def test_diverged_run_is_reported_without_warnings(broken):
  workdir, paths, text, noisy = broken
  assert not noisy, noisy
  assert (
    "1 of 24 runs diverged (non-finite or blown-up loss): Elman T = 5 (clip 0, seed 1, step 20)"
    in text
  )
  # The training curves show clip-on runs only; the clipping section counts the diverged run.
  assert "Runs that diverged: 1 without clipping, 0 with it." in text
  assert "1 diverged" in text  # in the success table
  assert os.path.join(workdir, "figures", "training_curves.png") in paths


LONG_NUMBER = re.compile(r"\d{7,}")  # what printing 1e24 with "{:.0f}" gave


def test_huge_loss_ratios_print_as_a_bound(blown_unflagged):
  text = blown_unflagged
  assert not LONG_NUMBER.search(text), LONG_NUMBER.findall(text)
  (row,) = [r for r in table_rows(text, "Elman") if r.startswith("| Elman | 1 |")]
  # T = 10: one run at 5e9 (not marked diverged) and one at about the baseline.
  assert row.split("|")[4].strip() == "0% (0/2) · >1e6", row
  # The training curves (clip-on runs) end above 1e6 times the baseline for Elman at T = 10;
  # the clipping section's median over the two seeds also lies beyond 1e6.
  assert "T = 10: Elman >1e6×" in text
  assert "is Elman >1e6 vs " in text
  assert "None of the 24 runs diverged." in text


def test_finite_blow_up_counts_as_diverged_not_as_a_ratio(blown_flagged):
  text = blown_flagged
  assert ">1e6" not in text and not LONG_NUMBER.search(text)
  assert (
    "1 of 24 runs diverged (non-finite or blown-up loss): Elman T = 10 (clip 1, seed 0, step 10)"
    in text
  )
  (row,) = [r for r in table_rows(text, "Elman") if r.startswith("| Elman | 1 |")]
  # The mean ratio is the other seed's alone (about 1: it stays at the baseline).
  entry = row.split("|")[4].strip()
  assert re.fullmatch(r"0% \(0/2\) · (0\.9\d*|1\.0\d*|1) · 1 diverged", entry), entry
  assert "1 of the 12 runs shown diverged (non-finite or blown-up training loss): Elman" in text
  assert "Elman at T = 10 (step 10)" in text
  assert "Runs that diverged: 0 without clipping, 1 with it." in text


def test_missing_gain_scan_skips_its_figure(broken):
  workdir, paths, text, _ = broken
  assert "Figure skipped: `gain_scan.csv` is missing from the workdir" in text
  assert not any("decay_vs_gain" in p for p in paths)
  assert "figures/decay_vs_gain" not in text
  assert len(paths) == len(report.FIGURES)  # four figures and report.md


def test_plots_return_none_without_their_data(tmp_path):
  workdir = make_workdir(str(tmp_path))
  summary = report.read_table(os.path.join(workdir, "summary.csv"))
  metrics = report.read_table(os.path.join(workdir, "metrics.csv"))
  off = {k: v[summary["clip"] == 0] for k, v in summary.items()}
  assert report.plot_clipping(off, metrics) is None
  scan = tmp_path / "empty.csv"
  scan.write_text(",".join(GAIN_SCAN) + "\n")
  assert report.plot_decay_vs_gain(report.read_table(scan)) is None
  assert report.plot_grad_vs_lag({}, summary) is None
  # One cell and one T only still draws.
  one = {k: v[(summary["cell"] == "gru") & (summary["T"] == 10)] for k, v in summary.items()}
  assert report.plot_success_vs_T(one) is not None


# ---------------------------------------------------------------------------
# Censored memory horizons.
# ---------------------------------------------------------------------------

HORIZONS = "Memory horizon per cell and T"


def test_report_marks_censored_horizons(full):
  _, _, text = full
  # Per cell and T: init -> trained, ">= L" where the horizon is the window's largest lag.
  expected = {}
  for cell in CELLS:
    for T in TS:
      texts = []
      for rate in (RATES[cell], RATES[cell] / 2):
        value, censored = horizon(rate, T)
        texts.append((">= " if censored else "") + str(value))
      expected[cell, T] = " → ".join(texts)
  # Both kinds occur: Elman at T = 10 measures 4 at init, its trained horizon is censored.
  assert expected["elman", 10] == "4 → >= 9" and expected["gru", 10] == "7 → >= 9"
  assert expected["lstm", 5] == ">= 4 → >= 4"
  for cell, name in zip(CELLS, ("Elman", "LSTM", "GRU"), strict=True):
    rows = table_rows(text, name, HORIZONS)
    assert len(rows) == 2, rows  # clip off and clip 1
    for row in rows:
      entries = [e.strip() for e in row.strip("|").split("|")][2:]
      assert entries == [expected[cell, T] for T in TS], row
  caption = " ".join(section(text, HORIZONS))
  assert "at least 10% of its value at lag 0" in caption
  assert "`>= L` marks a censored horizon: the norm never fell below that fraction" in caption
  assert "Censored: 16 of 24 horizons at initialisation, 24 of 24 after training." in caption


def test_censored_flags_from_gradients_without_the_columns(tmp_path):
  """A summary.csv written before the flags: censoring read from gradients.csv's lags."""
  (tmp_path / "flagged").mkdir()
  (tmp_path / "old").mkdir()
  flagged = make_workdir(str(tmp_path / "flagged"), gain_scan=False)
  old = make_workdir(str(tmp_path / "old"), gain_scan=False, flags=False)
  tables = {}
  for name, workdir in (("flagged", flagged), ("old", old)):
    summary = report.read_table(os.path.join(workdir, "summary.csv"))
    gradients = report.read_table(os.path.join(workdir, "gradients.csv"))
    tables[name] = report._horizon_table(summary, gradients, {})
  assert "memory_horizon_censored" not in report.read_table(os.path.join(old, "summary.csv"))
  assert (
    tables["old"] == tables["flagged"]
    and "| Elman | off | >= 4 → >= 4 | 4 → >= 9 |" in (tables["old"])
  )
  assert "a fixed fraction (`diagnostics.horizon_fraction`)" in tables["old"]
  unknown = report._horizon_table(summary, {}, {})  # neither flags nor gradients
  assert ">=" not in unknown.split("\n\n")[0] and "is not recorded" in unknown


def test_censored_median_is_a_lower_bound_when_a_middle_value_is():
  median = report._censored_median
  assert median(np.array([3, 9, 5]), np.array([False, True, False])) == (5.0, False)
  assert median(np.array([9, 9, 5]), np.array([True, True, False])) == (9.0, True)
  assert median(np.array([5, 9]), np.array([False, True])) == (7.0, True)
  assert median(np.array([4, 6]), np.array([False, False])) == (5.0, False)


def test_summary_rows_flag_horizons_at_the_largest_lag():
  import ml_collections

  config = ml_collections.ConfigDict(
    {
      "task": {"name": "adding", "kwargs": {}},
      "model": {"hidden_size": 8},
      "train": {"solve_window": 2},
    }
  )
  members = tuple(
    sweep.Member(index=i, cell="elman", T=5, gain=1.0, clip=0.0, lr=0.01, seed=i) for i in (0, 1)
  )
  steps = np.full((2, 4), 0.2)
  lags = np.arange(5.0)

  def diag(horizons):
    return {
      "log_grad_norms": np.stack([-0.1 * lags, -2.0 * lags]),  # 5 lags: the largest is 4
      "decay_rate": np.array([-0.1, -2.0]),
      "memory_horizon": np.array(horizons),
      "spectral_radius": np.ones(2),
      "lyapunov": -np.ones(2),
    }

  result = sweep.GroupResult(
    group=sweep.Group("elman_T5", "elman", 5, members),
    records={"loss": steps, "metric": steps, "clipped": np.zeros((2, 4), bool)},
    finish={
      "eval_loss": np.full(2, 0.2),
      "eval_metric": np.full(2, 0.2),
      "solved": np.zeros(2, bool),
      "diverged_at": np.full(2, -1),
    },
    init_finish={"eval_loss": np.full(2, 0.2)},
    init=diag([4, 2]),
    trained=diag([3, 4]),
    baseline=1 / 6,
    task="adding",
  )
  rows = [
    dict(zip(sweep.SUMMARY_COLUMNS, r, strict=True)) for r in sweep.summary_rows(config, result)
  ]
  assert [r["memory_horizon_init"] for r in rows] == [4, 2]
  assert [r["memory_horizon_init_censored"] for r in rows] == [True, False]
  assert [r["memory_horizon"] for r in rows] == [3, 4]
  assert [r["memory_horizon_censored"] for r in rows] == [False, True]
  columns = list(sweep.SUMMARY_COLUMNS)
  for flag in ("memory_horizon_init_censored", "memory_horizon_censored"):
    assert columns.index(flag) == columns.index(flag.removesuffix("_censored")) + 1


# ---------------------------------------------------------------------------
# The report draws through rnnlab.plot.
# ---------------------------------------------------------------------------


def test_report_figures_draw_through_rnnlab_plot(tmp_path, monkeypatch):
  from rnnlab import plot

  workdir = make_workdir(str(tmp_path))
  summary = report.read_table(os.path.join(workdir, "summary.csv"))
  gradients = report.read_table(os.path.join(workdir, "gradients.csv"))
  metrics = report.read_table(os.path.join(workdir, "metrics.csv"))
  calls = []
  for name in ("grad_norm_vs_lag", "training_curves"):
    original = getattr(plot, name)
    spy = lambda *a, _name=name, _f=original, **k: calls.append((_name, a, k)) or _f(*a, **k)  # noqa: E731
    monkeypatch.setattr(plot, name, spy)
  fig = report.plot_grad_vs_lag(gradients, summary)
  grad_calls = [c for c in calls if c[0] == "grad_norm_vs_lag"]
  assert len(grad_calls) == 2  # one per phase panel, all three cells in each
  series = grad_calls[0][1][0]
  assert [k.split(":")[0] for k in series] == ["Elman", "LSTM", "GRU"]
  # The init panel's Elman line: the median over seeds of rate * lag - seed, in log10.
  line = fig.axes[0].get_lines()[0]
  np.testing.assert_allclose(
    line.get_ydata(), (RATES["elman"] * np.arange(10) - 0.5) / math.log(10)
  )
  report.plot_training_curves(metrics, summary)
  assert len([c for c in calls if c[0] == "training_curves"]) == len(TS)
