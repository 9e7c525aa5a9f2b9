"""The report: figures and readings that follow the experiment's axes, from tables in one schema.

Every synthetic workdir here is written through rnnlab.runner.tables' writer (the
runner's), so the report reads exactly what the runner writes.

The flagship stand-in sweeps model.cell x task.length x clip, 3 cells x 2 T x 2 clips x
2 seeds: the LSTM solves every run, the Elman cell none and the GRU only the shorter
T; gradients decay at known exact rates (``ln ||dL/dh_t|| = rate * lag``), the memory
horizons are those rates' (censored where the window ends first) and the gain scan's
Elman Pascanu bound equals the gain. The ablation stand-in sweeps
model.hidden_size x optimizer.learning_rate of a cell of one's own ("mymod:mycell",
not swept, without CellParts: its diagnostics are NaN), with no T or clip axis and no
gain scan.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings

import numpy as np
import pytest

from rnnlab import report
from rnnlab.report import clipping, curves, gain_scan, gradients, reading, success
from rnnlab.runner import tables

CELLS = ("elman", "lstm", "gru")
TS = (5, 10)
CLIPS = (0.0, 1.0)
SEEDS = (0, 1)
STEPS = 30
BASELINE = 1 / 6
RATES = {"elman": -0.5, "lstm": -0.1, "gru": -0.3}  # ln-norm slope per step at init
GAINS = (0.5, 0.8, 1.25, 2.0)  # the Pascanu threshold (gain 1) lies between grid points
FRACTION = 0.1  # diagnostics.horizon_fraction of the synthetic sweep
BLOWN_UP = 5e9  # a finite blow-up's loss (Adam at learning rate 1e4 on the adding task)
FLAGSHIP_AXES = ("model.cell", "task.length", "clip")


def horizon(rate, T):
  """The memory horizon of ``ln ||dL/dh_t|| = rate * lag`` over lags 0..T-1, and if censored.

  Written from the definition (the largest lag whose norm is at least FRACTION of
  lag 0's), apart from rnnlab.diagnostics.memory_horizon.
  """
  reach = math.floor(math.log(FRACTION) / rate)
  return min(reach, T - 1), reach >= T - 1


def summary_row(member, group, axes, seed, cell, T, **values):
  """A summary.csv row: every fixed column None (empty) unless given."""
  row = dict.fromkeys(tables.summary_columns(list(axes)))
  row.update(member=member, group=group, seed=seed, cell=cell, T=T, **axes)
  row.update(values)
  return row


def metric_row(member, step, loss, clipped=False, nonfinite=False, diverged=False, lr=0.002):
  return {
    "member": member,
    "step": step,
    "loss": loss,
    "metric": loss,
    "grad_norm": 1.0,
    "clipped": clipped,
    "nonfinite": nonfinite,
    "diverged": diverged,
    "learning_rate": lr,
  }


def write_config(path, axes, **extra):
  config = {
    "task": {"name": "adding", "length": 50, "kwargs": {}},
    "model": {"cell": "lstm", "hidden_size": 8, "gain": 1.0},
    "optimizer": {"name": "adam", "learning_rate": 0.002},
    "clip": 1.0,
    "batch_size": 16,
    "num_steps": STEPS,
    "sweep": {"axes": {k: list(v) for k, v in axes.items()}, "seeds": len(SEEDS)},
    "diagnostics": {"horizon_fraction": FRACTION},
    "report": {"solve_window": 10, "success_x": None, "group_by": None},
  }
  for key, value in extra.items():
    node = config
    *parents, last = key.split(".")
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = value
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)


def make_workdir(path, diverge=False, gain_scan=True, blow_up=None, **config):
  """Writes the flagship stand-in's tables into ``path``.

  ``diverge``: one Elman run (T = 5, clip 0, seed 1) goes non-finite at step 20.
  ``blow_up``: one Elman run (T = 10, clip 1, seed 0) blows up finitely from step 10
  on (loss ``BLOWN_UP``), marked diverged (``"flagged"``: ``diverged_at`` = 10 and the
  per-step ``diverged`` record) or not (``"unflagged"``: as a run with the rule off).
  """
  rng = np.random.default_rng(0)
  short = min(TS)
  summary, metrics, grads = [], [], []
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
          axes = {"model.cell": cell, "task.length": T, "clip": clip}
          summary.append(
            summary_row(
              member,
              f"{cell}_T{T}",
              axes,
              seed,
              cell,
              T,
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
            nonfinite = not np.isfinite(loss[s])
            rejected = nonfinite or 0 <= diverged_at <= s
            metrics.append(metric_row(member, s, loss[s], clipped, nonfinite, rejected))
          for phase, r in (("init", rate), ("trained", rate / 2)):
            for lag in range(T):
              grads.append([member, phase, lag, r * lag - seed])
          member += 1
  tables.write_table(path, tables.SUMMARY, summary, FLAGSHIP_AXES)
  tables.write_table(path, tables.METRICS, metrics)
  tables.write_table(path, tables.GRADIENTS, grads)
  if gain_scan:
    scan = []
    for cell in CELLS:
      for gain in GAINS:
        for seed in SEEDS:
          decay = math.log(gain) - 0.1 if cell == "elman" else -0.1 - 0.01 * seed
          bound = gain if cell == "elman" else math.nan
          scan.append([cell, TS[-1], gain, seed, decay, 4, gain, gain, bound, decay + 0.05])
    tables.write_table(path, tables.GAIN_SCAN, scan)
  axes = {"model.cell": CELLS, "task.length": TS, "clip": CLIPS}
  write_config(path, axes, **{"preset": "quick", **config})
  return path


OWN_CELL = "mymod:mycell"
OWN = "mycell"  # as figures and readings name it (its factory)
HIDDEN = (32, 64)
LRS = (1e-3, 3e-3)


def make_ablation(path, **config):
  """hidden size x learning rate of a cell without CellParts: NaN diagnostics, no T/clip axis.

  The run solves iff hidden size 64 (both learning rates); lr 3e-3 with hidden 32 and
  seed 1 diverges at step 5.
  """
  axes = ("model.hidden_size", "optimizer.learning_rate")
  summary, metrics, grads = [], [], []
  member = 0
  for hidden in HIDDEN:
    for lr in LRS:
      for seed in SEEDS:
        solves = hidden == 64
        steps = np.arange(STEPS)
        loss = BASELINE * (np.exp(-steps / 5) + 0.01 if solves else np.ones(STEPS))
        diverged_at = 5 if (hidden, lr, seed) == (32, 3e-3, 1) else -1
        if diverged_at >= 0:
          loss[diverged_at:] = np.inf
        summary.append(
          summary_row(
            member,
            f"H{hidden}",
            {"model.hidden_size": hidden, "optimizer.learning_rate": lr},
            seed,
            OWN_CELL,
            20,
            final_loss=float(loss[-1]) if np.isfinite(loss[-1]) else None,
            final_metric=0.5,
            initial_loss=BASELINE,
            baseline=BASELINE,
            solved=solves,
            steps_to_solve=8 if solves else -1,
            diverged_at=diverged_at,
            clip_fraction=0.3,
            # No CellParts: every diagnostic is n/a (written empty).
          )
        )
        for s in steps:
          metrics.append(metric_row(member, s, loss[s], diverged=0 <= diverged_at <= s, lr=lr))
        for phase in ("init", "trained"):
          for lag in range(20):
            grads.append([member, phase, lag, None])
        member += 1
  tables.write_table(path, tables.SUMMARY, summary, axes)
  tables.write_table(path, tables.METRICS, metrics)
  tables.write_table(path, tables.GRADIENTS, grads)
  write_config(
    path,
    {"model.hidden_size": HIDDEN, "optimizer.learning_rate": LRS},
    **{"model.cell": OWN_CELL, "task.length": 20, **config},
  )
  return path


def write(workdir, formats=("png",)):
  """write_report with warnings recorded: ``(paths, report.md text, warnings)``."""
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter("always")
    paths = report.write_report(workdir, formats=formats, dpi=40)
  noisy = [f"{w.category.__name__}: {w.message}" for w in record]
  with open(os.path.join(workdir, "report.md")) as f:
    return paths, f.read(), noisy


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  """The flagship workdir and its report in PNG and SVG: ``(workdir, paths, report text)``."""
  workdir = make_workdir(str(tmp_path_factory.mktemp("full")))
  paths, text, noisy = write(workdir, formats=("png", "svg"))
  assert not noisy, noisy
  return workdir, paths, text


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
  """One diverged run (NaN losses) and no gain_scan.csv."""
  workdir = make_workdir(str(tmp_path_factory.mktemp("broken")), diverge=True, gain_scan=False)
  paths, text, noisy = write(workdir)
  return workdir, paths, text, noisy


@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
  workdir = make_ablation(str(tmp_path_factory.mktemp("ablation")))
  paths, text, noisy = write(workdir)
  return workdir, paths, text, noisy


def blown_report(tmp_path_factory, kind):
  workdir = make_workdir(str(tmp_path_factory.mktemp(kind)), blow_up=kind)
  _, text, noisy = write(workdir)
  assert not noisy, noisy
  return text


@pytest.fixture(scope="module")
def blown_flagged(tmp_path_factory):
  """report.md of a sweep where one run blew up finitely and was marked diverged."""
  return blown_report(tmp_path_factory, "flagged")


@pytest.fixture(scope="module")
def blown_unflagged(tmp_path_factory):
  """report.md of a sweep where one run blew up finitely, not marked (the rule was off)."""
  return blown_report(tmp_path_factory, "unflagged")


def section(text, heading):
  """The lines of report.md's section ``## <heading>``, up to the next heading."""
  lines = text.splitlines()
  start = lines.index(f"## {heading}") + 1
  end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
  return lines[start:end]


def headings(text):
  return [line[3:] for line in text.splitlines() if line.startswith("## ")]


def table_rows(text, first, heading="Success rate per cell and T"):
  return [line for line in section(text, heading) if line.startswith(f"| {first} |")]


def entries(row):
  return [e.strip() for e in row.strip().strip("|").split("|")]


# ---------------------------------------------------------------------------
# The tables' schema: one writer, one reader.
# ---------------------------------------------------------------------------


def test_summary_columns_put_the_axes_between_group_and_seed():
  columns = tables.summary_columns(["model.hidden_size", "clip"])
  assert columns[:5] == ("member", "group", "model.hidden_size", "clip", "seed")
  assert columns[5:7] == ("cell", "T")
  assert tables.axes_of(columns) == ("model.hidden_size", "clip")
  assert tables.axes_of(tables.summary_columns([])) == ()
  with pytest.raises(ValueError, match="'seed' is named like a fixed column"):
    tables.summary_columns(["seed"])
  with pytest.raises(ValueError, match="repeat"):
    tables.summary_columns(["clip", "clip"])
  with pytest.raises(ValueError, match="no axis columns"):
    tables.columns(tables.METRICS, ["clip"])


def test_metrics_schema_covers_every_step_metric_of_the_trainer():
  from rnnlab import train

  assert tables.columns(tables.METRICS) == ("member", "step", *train.STEP_METRICS)
  assert set(train.STEP_METRICS) <= set(tables.STEP_METRIC_KINDS)


def test_metrics_take_flossings_columns_only_when_asked(tmp_path):
  from rnnlab import train

  optional = list(train.FLOSS_METRICS)
  assert tables.columns(tables.METRICS, optional=optional)[-2:] == ("floss", "lyapunov_max")
  row = [0, 0, 0.5, 1.0, 2.0, True, False, False, 1e-3, float("nan"), -0.25]
  path = tables.write_table(tmp_path, tables.METRICS, [row], optional=optional)
  read = tables.read_table(path)
  assert np.isnan(read["floss"][0]) and read["lyapunov_max"][0] == -0.25
  with pytest.raises(ValueError, match="optional columns \\['floss'\\] are invalid for summary"):
    tables.columns(tables.SUMMARY, optional=["floss"])
  with pytest.raises(ValueError, match="optional columns \\['lyapunov'\\] are invalid"):
    tables.columns(tables.METRICS, optional=["lyapunov"])


def test_tables_round_trip_types_and_read_with_pandas(tmp_path):
  import pandas as pd

  axes = ["model.cell", "model.hidden_size", "optimizer.learning_rate", "clip", "model.flag"]
  rows = [
    summary_row(
      0,
      "a",
      {
        "model.cell": OWN_CELL,
        "model.hidden_size": 32,
        "optimizer.learning_rate": 1.0,  # a float that prints as an integer stays a float
        "clip": None,
        "model.flag": True,
      },
      0,
      OWN_CELL,
      5,
      final_loss=np.float32(0.1),
      solved=True,
      memory_horizon=3,
      diverged_at=-1,
    ),
    summary_row(
      1,
      "b",
      {
        "model.cell": "lstm",
        "model.hidden_size": 64,
        "optimizer.learning_rate": 1e-5,
        "clip": 1.0,
        "model.flag": False,
      },
      1,
      "lstm",
      5,
      final_loss=math.inf,
      solved=False,
      memory_horizon=None,  # n/a
      diverged_at=-1,
    ),
  ]
  path = tables.write_table(tmp_path, tables.SUMMARY, rows, axes)
  t = tables.read_table(path)
  assert list(t) == list(tables.summary_columns(axes))
  assert t["member"].dtype == np.int64 and t["seed"].tolist() == [0, 1]
  assert t["model.hidden_size"].dtype == np.int64 and t["model.hidden_size"].tolist() == [32, 64]
  assert t["optimizer.learning_rate"].dtype == np.float64
  assert t["optimizer.learning_rate"].tolist() == [1.0, 1e-5]
  assert np.isnan(t["clip"][0]) and t["clip"][1] == 1.0
  assert t["model.flag"].dtype == np.bool_ and t["model.flag"].tolist() == [True, False]
  assert t["model.cell"].tolist() == [OWN_CELL, "lstm"] and t["cell"].dtype.kind == "U"
  # A float32 is written with 9 digits: it reads back as the same float32.
  assert np.float32(t["final_loss"][0]) == np.float32(0.1) and t["final_loss"][1] == np.inf
  assert t["solved"].dtype == np.bool_ and t["solved"].tolist() == [True, False]
  # An int column with an empty field reads as float64 with NaN (as pandas reads it).
  assert t["memory_horizon"].dtype == np.float64
  assert t["memory_horizon"][0] == 3 and np.isnan(t["memory_horizon"][1])
  assert np.isnan(t["lyapunov"]).all() and t["lyapunov"].dtype == np.float64
  frame = pd.read_csv(path)
  assert list(frame.columns) == list(t)
  for column in ("model.hidden_size", "optimizer.learning_rate", "final_loss", "seed"):
    np.testing.assert_array_equal(frame[column].to_numpy(np.float64), t[column].astype(float))
  assert frame["solved"].tolist() == [True, False]


def test_writer_refuses_rows_that_do_not_fit_the_schema(tmp_path):
  good = summary_row(0, "g", {"clip": 1.0}, 0, "lstm", 5)
  with pytest.raises(ValueError, match=r"lacks columns \['T'\]"):
    tables.format_table(tables.SUMMARY, [{k: v for k, v in good.items() if k != "T"}], ["clip"])
  with pytest.raises(ValueError, match="column 'T' value 5.5 is invalid"):
    tables.format_table(tables.SUMMARY, [{**good, "T": 5.5}], ["clip"])
  with pytest.raises(ValueError, match="column 'solved' value 'yes' is invalid"):
    tables.format_table(tables.SUMMARY, [{**good, "solved": "yes"}], ["clip"])
  with pytest.raises(ValueError, match="has 3 values; expected 4"):
    tables.format_table(tables.GRADIENTS, [[0, "init", 1]])
  # Nothing was written: the writer formats first, then replaces the file whole.
  assert not os.listdir(tmp_path)


def test_reader_header_only_missing_ragged_and_bad_kinds(tmp_path):
  empty = tmp_path / tables.GAIN_SCAN
  empty.write_text(",".join(tables.columns(tables.GAIN_SCAN)) + "\n")
  t = tables.read_table(empty)
  assert list(t) == list(tables.columns(tables.GAIN_SCAN))
  assert all(v.shape == (0,) for v in t.values())
  assert t["T"].dtype == np.int64 and t["gain"].dtype == np.float64
  missing = tmp_path / "nope.csv"
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
    tables.read_table(missing)
  ragged = tmp_path / "ragged.csv"
  ragged.write_text("a,b\n1,2\n3\n")
  with pytest.raises(ValueError, match="line 3"):
    tables.read_table(ragged)
  bad = tmp_path / tables.GRADIENTS
  bad.write_text("member,phase,lag,log_grad_norm\n0,init,one,1.0\n")
  with pytest.raises(ValueError, match="column 'lag' holds 'one'"):
    tables.read_table(bad)


# ---------------------------------------------------------------------------
# Axes: which are drawn, and how.
# ---------------------------------------------------------------------------


def axis(path, values):
  return reading.make_axis(path, np.asarray(values))


def test_default_axes_t_against_cell_else_first_numeric_else_other():
  cell, T = axis("model.cell", ["lstm", "gru"]), axis("task.length", [5, 10])
  hidden, lr = axis("model.hidden_size", [32, 64]), axis("optimizer.learning_rate", [1e-3, 3e-3])
  init = axis("model.recurrent_init", ["orthogonal", "identity"])
  one = axis("clip", [1.0, 1.0])
  assert reading.choose_axes([hidden, cell, T])[:2] == (T, cell)
  assert reading.choose_axes([cell, hidden, lr])[:2] == (hidden, cell)
  assert reading.choose_axes([hidden, lr])[:2] == (hidden, lr)
  assert reading.choose_axes([cell, init])[:2] == (init, cell)
  assert reading.choose_axes([cell, one])[:2] == (cell, None)  # an axis of one value is fixed
  assert reading.choose_axes([one])[:2] == (None, None)
  x, group, notes = reading.choose_axes([hidden, lr, T], "optimizer.learning_rate", "task.length")
  assert (x, group, notes) == (lr, T, [])
  x, group, notes = reading.choose_axes([hidden, lr], "model.nope", None)
  assert (x, group) == (hidden, lr)
  assert "`config.report.success_x` = 'model.nope' is not an axis" in notes[0]


def test_axis_values_order_and_texts():
  cell = axis("model.cell", ["gru", OWN_CELL, "lstm", "elman", "gru"])
  assert cell.values == ("elman", "lstm", "gru", OWN_CELL)
  assert [cell.text(v) for v in cell.values] == ["Elman", "LSTM", "GRU", OWN]
  # Two factories of one name are told apart by their import paths.
  twins = axis("model.cell", ["a.cells:mycell", "b.cells:mycell", "lstm"])
  assert [twins.text(v) for v in twins.values] == ["LSTM", "a.cells:mycell", "b.cells:mycell"]
  assert cell.codes.tolist() == [2, 3, 1, 0, 2]
  clip = axis("clip", [1.0, np.nan, 0.5])
  assert clip.values == (None, 0.5, 1.0) and clip.text(None) == "off"
  assert clip.name(1.0) == "clip = 1" and clip.label == "clip"
  lr = axis("optimizer.learning_rate", [3e-3, 1e-3])
  assert lr.values == (1e-3, 3e-3) and lr.name(1e-3) == "lr = 0.001"
  other = axis("model.hidden_size", [64, 32])
  assert other.name(32) == "model.hidden_size = 32"


# ---------------------------------------------------------------------------
# The flagship: every figure, readings computed from the data.
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
  assert headings(text) == [
    "Success rate per cell and T",
    "Memory horizon per cell and T",
    "1. Gradient norm against lag",
    "2. Gradient decay against recurrent gain (untrained)",
    "3. Training curves",
    "4. Success rate against T",
    "5. Gradient clipping",
  ]


def test_report_success_table(full):
  _, _, text = full
  assert "| cell | clip | T = 5 | T = 10 |" in text
  for cell, at in (("LSTM", ("100%", "100%")), ("Elman", ("0%", "0%")), ("GRU", ("100%", "0%"))):
    rows = table_rows(text, cell)
    assert [entries(r)[1] for r in rows] == ["off", "1"]
    for row in rows:
      got = entries(row)[2:]
      for entry, rate in zip(got, at, strict=True):
        solved = "2/2" if rate == "100%" else "0/2"
        assert entry.startswith(f"{rate} ({solved})"), row


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
  assert "- With clipping (clip = 1): Elman" in text and "- Without clipping: Elman" in text
  assert "Clipping (threshold 1) fired on 25% of Elman steps at T = 10" in text
  assert "The curves show the clipping-on runs (clip = 1; also in the data: clip = off)" in text
  assert "None of the 24 runs diverged." in text
  assert (
    "The sweep (preset `quick`) trained 24 runs on the `adding` task (trivial-predictor "
    "baseline loss 0.167), sweeping `model.cell` (Elman, LSTM and GRU) × `task.length` (5 and "
    "10) × `clip` (off and 1), 2 seeds per setting." in text
  )
  assert "Every run: 8 hidden units, adam at learning rate 0.002, batch size 16, 30 steps." in text
  assert "Figure skipped" not in text
  assert report.present(report.read_experiment(full[0])) == list(report.FIGURES)


def test_diverged_run_is_reported_without_warnings(broken):
  workdir, paths, text, noisy = broken
  assert not noisy, noisy
  assert (
    "1 of 24 runs diverged (non-finite or blown-up loss): Elman T = 5 (clip off, seed 1, "
    "step 20)" in text
  )
  # The training curves show clip-on runs only; the clipping section counts the diverged run.
  assert "Runs that diverged: 1 without clipping, 0 with it." in text
  assert "1 diverged" in text  # in the success table
  assert os.path.join(workdir, "figures", "training_curves.png") in paths


def test_missing_gain_scan_drops_its_section(broken):
  workdir, paths, text, _ = broken
  assert not any("decay_vs_gain" in p for p in paths)
  assert "decay" not in " ".join(headings(text)) and "decay_vs_gain" not in text
  assert len(paths) == len(report.FIGURES)  # four figures and report.md


LONG_NUMBER = re.compile(r"\d{7,}")  # what printing 1e24 with "{:.0f}" gave


def test_huge_loss_ratios_print_as_a_bound(blown_unflagged):
  text = blown_unflagged
  assert not LONG_NUMBER.search(text), LONG_NUMBER.findall(text)
  (row,) = [r for r in table_rows(text, "Elman") if entries(r)[1] == "1"]
  # T = 10: one run at 5e9 (not marked diverged) and one at about the baseline.
  assert entries(row)[3] == "0% (0/2) · >1e6", row
  # The training curves (clip-on runs) end above 1e6 times the baseline for Elman at T = 10;
  # the clipping section's median over the two seeds also lies beyond 1e6.
  assert "T = 10: Elman >1e6×" in text
  assert "is Elman >1e6 vs " in text
  assert "None of the 24 runs diverged." in text


def test_finite_blow_up_counts_as_diverged_not_as_a_ratio(blown_flagged):
  text = blown_flagged
  assert ">1e6" not in text and not LONG_NUMBER.search(text)
  assert (
    "1 of 24 runs diverged (non-finite or blown-up loss): Elman T = 10 (clip 1, seed 0, "
    "step 10)" in text
  )
  (row,) = [r for r in table_rows(text, "Elman") if entries(r)[1] == "1"]
  # The mean ratio is the other seed's alone (about 1: it stays at the baseline).
  entry = entries(row)[3]
  assert re.fullmatch(r"0% \(0/2\) · (0\.9\d*|1\.0\d*|1) · 1 diverged", entry), entry
  assert "1 of the 12 runs shown diverged (non-finite or blown-up training loss): Elman" in text
  assert "Elman at T = 10 (step 10)" in text
  assert "Runs that diverged: 0 without clipping, 1 with it." in text


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
      assert entries(row)[2:] == [expected[cell, T] for T in TS], row
  caption = " ".join(section(text, HORIZONS))
  assert "at least 10% of its value at lag 0" in caption
  assert "`>= L` marks a censored horizon: the norm never fell below that fraction" in caption
  assert "Censored: 16 of 24 horizons at initialisation, 24 of 24 after training." in caption


def test_censored_median_is_a_lower_bound_when_a_middle_value_is():
  from rnnlab.report.stats import censored_median as median

  assert median(np.array([3, 9, 5]), np.array([False, True, False])) == (5.0, False)
  assert median(np.array([9, 9, 5]), np.array([True, True, False])) == (9.0, True)
  assert median(np.array([5, 9]), np.array([False, True])) == (7.0, True)
  assert median(np.array([4, 6]), np.array([False, False])) == (5.0, False)
  assert median(np.array([4, np.nan]), np.array([False, False])) == (4.0, False)
  value, censored = median(np.array([np.nan]), np.array([False]))
  assert math.isnan(value) and not censored


# ---------------------------------------------------------------------------
# Any axes: an ablation of one's own cell over hidden size and learning rate.
# ---------------------------------------------------------------------------


def test_ablation_report_follows_its_axes(ablation):
  workdir, paths, text, noisy = ablation
  assert not noisy, noisy
  assert headings(text) == [
    "Success rate per lr and model.hidden_size",
    "1. Gradient norm against lag",
    "2. Training curves",
    "3. Success rate against model.hidden_size",
  ]  # no clip axis and no gain scan: their sections are dropped; no horizon was measured
  names = {os.path.basename(p) for p in paths}
  assert names == {"training_curves.png", "success_rate.png", "report.md"}
  assert report.present(report.read_experiment(workdir)) == [
    "grad_vs_lag",
    "training_curves",
    "success_rate",
  ]
  assert "The curves show the runs with" not in text  # nothing fixed: hidden size x lr
  assert "| lr | model.hidden_size = 32 | model.hidden_size = 64 |" in text
  rows = {entries(r)[0]: entries(r)[1:] for r in section(text, headings(text)[0]) if "% (" in r}
  assert rows == {
    "0.001": ["0% (0/2) · 1", "100% (2/2) · 0.013"],
    "0.003": ["0% (0/2) · 1 · 1 diverged", "100% (2/2) · 0.013"],
  }
  assert (
    "sweeping `model.hidden_size` (32 and 64) × `optimizer.learning_rate` (0.001 and 0.003), "
    "2 seeds per setting. Every run: the mycell (`mymod:mycell`) cell, T = 20, adam, clipping at 1, "
    "batch size 16, 30 steps." in text
  )
  assert "The gradient diagnostics are n/a for 8 of 8 runs (the mycell cell)" in text
  assert (
    "1 of 8 runs diverged (non-finite or blown-up loss): mycell T = 20 "
    "(model.hidden_size 32, lr 0.003, seed 1, step 5)." in text
  )
  assert "Figure skipped: no finite gradient norms were measured (n/a for the mycell cell" in text
  assert (
    "lr = 0.001 solves no run up to model.hidden_size = 32 and every run from "
    "model.hidden_size = 64 on (0/2, 2/2 at model.hidden_size = 32, 64), in a median of 8 "
    "steps at model.hidden_size = 64." in text
  )
  assert (
    "Final training loss (median over seeds of the last smoothed value) relative to the "
    "baseline: model.hidden_size = 32: lr = 0.001 1×, lr = 0.003 1×; model.hidden_size = 64: "
    "lr = 0.001 0.013×, lr = 0.003 0.013×." in text
  )
  assert (
    "for lr = 0.001 from model.hidden_size = 64 on but not up to model.hidden_size = 32" in text
  )
  assert (
    "diverged (non-finite or blown-up training loss): lr = 0.003 at model.hidden_size = 32 (step 5)"
    in text
  )


def test_report_axes_follow_config_overrides(tmp_path):
  swapped = make_ablation(
    str(tmp_path),
    **{"report.success_x": "optimizer.learning_rate", "report.group_by": "model.hidden_size"},
  )
  exp = report.read_experiment(swapped)
  assert (exp.x.path, exp.group.path) == ("optimizer.learning_rate", "model.hidden_size")
  d = success.data(exp)
  assert [(s["group"], s["solved"], s["runs"]) for s in d["series"]] == [
    (32, [0, 0], [2, 2]),
    (64, [2, 2], [2, 2]),
  ]
  _, text, noisy = write(swapped)
  assert not noisy, noisy
  assert "| model.hidden_size | lr = 0.001 | lr = 0.003 |" in text
  assert "## 3. Success rate against lr" in text
  assert "model.hidden_size = 64 solves every run at every lr up to 0.003" in text
  assert "model.hidden_size = 32 solves no run at any lr" in text
  # Lines per clip threshold: the cells are fixed to the config's own (an LSTM).
  (tmp_path / "by_clip").mkdir()
  flagship = make_workdir(str(tmp_path / "by_clip"), gain_scan=False, **{"report.group_by": "clip"})
  exp = report.read_experiment(flagship)
  assert (exp.x.path, exp.group.path) == ("task.length", "clip")
  assert exp.choose([exp.x, exp.group]) == {"model.cell": "lstm"}
  _, text, noisy = write(flagship)
  assert not noisy, noisy
  assert "The curves show the runs with cell = LSTM (all runs are in the success table)." in text
  assert "| clip | cell | T = 5 | T = 10 |" in text
  # The success figure styles its lines by the cell (a third axis), the clipping figure
  # draws a line per cell (its lines cannot be the clip values).
  assert "- LSTM: clip = off solves every run at every T up to 10" in text
  assert "Clipping (threshold 1) fired on 25% of Elman steps at T = 10" in text
  # An override that names no axis is said, and the default used.
  bad = make_ablation(str(tmp_path), **{"report.success_x": "model.num_layers"})
  _, text, _ = write(bad)
  assert "`config.report.success_x` = 'model.num_layers' is not an axis" in text
  assert "## 3. Success rate against model.hidden_size" in text


def test_a_categorical_axis_and_a_single_setting(tmp_path):
  init = ("orthogonal", "identity")
  rows, member = [], 0
  for cell in ("lstm", OWN_CELL):
    for scheme in init:
      for seed in SEEDS:
        solved = scheme == "identity"
        axes = {"model.cell": cell, "model.recurrent_init": scheme}
        rows.append(
          summary_row(
            member, "g", axes, seed, cell, 20, solved=solved, final_loss=0.1, baseline=1.0
          )
        )
        member += 1
  path = str(tmp_path / "init")
  os.makedirs(path)
  tables.write_table(path, tables.SUMMARY, rows, list(axes))
  _, text, noisy = write(path)
  assert not noisy, noisy
  assert "| cell | init = orthogonal | init = identity |" in text
  assert f"{OWN} solves 2 of 4 runs (0/2 at init = orthogonal, 2/2 at init = identity)" in text
  # Without metrics.csv and gradients.csv their sections say why.
  assert "Figure skipped: `gradients.csv` is missing from the workdir." in text
  assert "Figure skipped: `metrics.csv` is missing from the workdir." in text
  # Nothing swept: one row, no x axis to draw against.
  single = str(tmp_path / "single")
  os.makedirs(single)
  row = summary_row(0, "g", {}, 0, "gru", 5, solved=True, final_loss=0.1, baseline=1.0)
  tables.write_table(single, tables.SUMMARY, [row])
  _, text, noisy = write(single)
  assert not noisy, noisy
  assert "## Success rate over all runs" in text
  assert "| runs | all |" in text and "| all | 100% (1/1) · 0.1 |" in text
  assert "Figure skipped: no axis takes two or more values" in text


def test_paired_axes_of_a_zip_sweep_are_not_fixed_away(tmp_path):
  # The optimizer ablation's arms: each optimizer with its own learning rate (zip mode), so
  # the learning rate is determined by the optimizer; clip varies within SGD only.
  arms = [("sgd", 0.1, 0.0), ("sgd", 0.1, 1.0), ("adam", 0.001, 0.0)]
  rows, member = [], 0
  for T in (10, 20):
    for name, lr, clip in arms:
      for seed in SEEDS:
        axes = {
          "task.length": T,
          "optimizer.name": name,
          "optimizer.learning_rate": lr,
          "clip": clip,
        }
        solved = name == "adam" or clip > 0 or T == 10
        rows.append(
          summary_row(
            member, "g", axes, seed, "elman", T, solved=solved, final_loss=0.1, baseline=1.0
          )
        )
        member += 1
  path = str(tmp_path / "zip")
  os.makedirs(path)
  tables.write_table(path, tables.SUMMARY, rows, list(axes))
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"optimizer": {"learning_rate": 0.1}, "report": {"group_by": "optimizer.name"}}, f)
  exp = reading.read_experiment(path)
  assert (exp.x.path, exp.group.path) == ("task.length", "optimizer.name")
  # Drawn against T per optimizer, the learning rate is the optimizer's: not fixed, both kept;
  # clipping on would keep SGD's runs only, so the curves show clip off, every optimizer.
  assert exp.choose([exp.x, exp.group]) == {"clip": 0.0}
  assert exp.choose([exp.x, exp.group, exp.axis("clip")]) == {}
  assert success.style_axis(exp, exp.x, exp.group).path == "clip"
  d = success.data(exp)
  assert {(s["group"], s["style"]) for s in d["series"]} == {
    ("sgd", 1.0),
    ("sgd", 0.0),
    ("adam", 0.0),
  }
  assert d["fixed"] == {}


def test_each_section_computes_its_data_once(tmp_path, monkeypatch):
  workdir = make_workdir(str(tmp_path))
  calls = []
  for module in (gradients, gain_scan, curves, success, clipping):
    original = module.data
    monkeypatch.setattr(
      module, "data", lambda exp, _f=original, _m=module: calls.append(_m.NAME) or _f(exp)
    )
  report.write_report(workdir, formats=("png",), dpi=30)
  assert sorted(calls) == sorted(report.FIGURES)


def test_sections_without_their_data_draw_nothing(tmp_path):
  exp = report.read_experiment(make_workdir(str(tmp_path)))
  clip = exp.axis("clip")
  off = exp.where(clip.codes == clip.code(0.0))
  assert not clipping.applies(off) and clipping.data(off) is None
  assert gradients.data(exp.where(np.zeros(exp.n, bool))) is None  # no members
  one = exp.where((exp.summary["cell"] == "gru") & (exp.summary["T"] == 10))
  assert one.x is not None and one.x.path == "clip"  # the only axis left with two values
  assert success.plot(success.data(one)) is not None


# ---------------------------------------------------------------------------
# The report draws through rnnlab.plot.
# ---------------------------------------------------------------------------


def test_report_figures_draw_through_rnnlab_plot(tmp_path, monkeypatch):
  from rnnlab import plot

  exp = report.read_experiment(make_workdir(str(tmp_path)))
  calls = []
  for name in ("grad_norm_vs_lag", "training_curves"):
    original = getattr(plot, name)
    spy = lambda *a, _name=name, _f=original, **k: calls.append((_name, a, k)) or _f(*a, **k)  # noqa: E731
    monkeypatch.setattr(plot, name, spy)
  fig = gradients.plot(gradients.data(exp))
  grad_calls = [c for c in calls if c[0] == "grad_norm_vs_lag"]
  assert len(grad_calls) == 2  # one per phase panel, all three cells in each
  series = grad_calls[0][1][0]
  assert [k.split(":")[0] for k in series] == ["Elman", "LSTM", "GRU"]
  # The init panel's Elman line: the median over seeds of rate * lag - seed, in log10.
  line = fig.axes[0].get_lines()[0]
  np.testing.assert_allclose(
    line.get_ydata(), (RATES["elman"] * np.arange(10) - 0.5) / math.log(10)
  )
  curves.plot(curves.data(exp))
  assert len([c for c in calls if c[0] == "training_curves"]) == len(TS)


def test_module_entry_point_redraws_a_workdir(tmp_path, capsys):
  from rnnlab.report.__main__ import main

  workdir = make_ablation(str(tmp_path))
  assert main([workdir, "svg"]) == 0
  assert os.path.isfile(os.path.join(workdir, "figures", "success_rate.svg"))
  assert "read " + os.path.join(workdir, "report.md") in capsys.readouterr().out
  assert main([str(tmp_path / "nowhere")]) == 2
  assert "report: error: tables: no such file" in capsys.readouterr().err


def test_own_cell_against_the_lstm_shows_its_diagnostics_as_na(tmp_path):
  """The runner guide's ablation (docs/runner.md): a cell without CellParts swept with the LSTM over hidden size."""
  rows, grads, member = [], [], 0
  for cell in ("lstm", OWN_CELL):
    for hidden in HIDDEN:
      for seed in SEEDS:
        own = cell == OWN_CELL
        diagnostics = (
          {}
          if own
          else dict(
            decay_rate_init=-0.1,
            decay_rate=-0.05,
            memory_horizon_init=7,
            memory_horizon_init_censored=False,
            memory_horizon=9,
            memory_horizon_censored=True,
          )
        )
        axes = {"model.cell": cell, "model.hidden_size": hidden}
        values = dict(solved=not own, final_loss=None, **diagnostics)
        rows.append(summary_row(member, cell, axes, seed, cell, 10, **values))
        for phase in ("init", "trained"):
          for lag in range(10):
            grads.append([member, phase, lag, None if own else -0.1 * lag])
        member += 1
  path = str(tmp_path)
  tables.write_table(path, tables.SUMMARY, rows, list(axes))
  tables.write_table(path, tables.GRADIENTS, grads)
  _, text, noisy = write(path)
  assert not noisy, noisy
  assert "## Memory horizon per cell and model.hidden_size" in text
  assert "| LSTM | 7 → >= 9 | 7 → >= 9 |" in text
  assert "sweeping `model.cell` (LSTM and mycell (`mymod:mycell`))" in text
  assert f"| {OWN} | n/a → n/a | n/a → n/a |" in text
  assert "Censored: 0 of 4 horizons at initialisation, 4 of 4 after training." in text
  assert "`n/a`: 4 runs without a horizon" in text
  exp = report.read_experiment(path)
  d = gradients.data(exp)
  assert [line["name"] for line in d["phases"]["init"].values()] == ["LSTM"]
  assert d["na"] == [OWN] and d["na_cells"] == [OWN]
  assert "![Gradient norm against lag](figures/grad_vs_lag.png)" in text
  assert f"No line for {OWN}: n/a for the {OWN} cell" in text
  # Rows of its members left out of gradients.csv altogether read the same.
  measured = exp.where(np.ones(exp.n, bool))
  kept = {k: v[exp.gradient_rows < 4] for k, v in exp.gradients.items()}
  exp2 = reading.experiment(measured.summary, {}, kept, {}, {})
  assert gradients.data(exp2)["na"] == [OWN]
  # No gradient rows at all (every cell without CellParts): n/a, not a missing table.
  none = reading.experiment(exp.summary, {}, {k: v[:0] for k, v in exp.gradients.items()})
  assert gradients.data(none)["na"] == ["LSTM", OWN]
  assert gradients.plot(gradients.data(none)) is None
  assert "n/a for the LSTM and mycell cells" in gradients.why(none, gradients.data(none))
  assert "LSTM solves every run" in text and f"{OWN} solves no run" in text
  # No held-out evaluation (an empty final loss) is no divergence.
  assert "None of the 8 runs diverged." in text and "| LSTM | 100% (2/2) | 100% (2/2) |" in text


def test_group_by_joins_axes_into_one_line_per_combination(tmp_path):
  # The initialisation ablation: chrono is orthogonal W_hh with chrono_t_max set, so the
  # scheme alone would merge it into orthogonal; "a+b" gives each combination a line.
  schemes = [("orthogonal", None), ("identity", None), ("orthogonal", 40.0)]
  rows, member = [], 0
  for T in (10, 20):
    for init, t_max in schemes:
      for seed in SEEDS:
        axes = {"task.length": T, "model.recurrent_init": init, "model.chrono_t_max": t_max}
        solved = t_max is not None or T == 10
        rows.append(
          summary_row(
            member, "g", axes, seed, "lstm", T, solved=solved, final_loss=0.1, baseline=1.0
          )
        )
        member += 1
  path = str(tmp_path / "chrono")
  os.makedirs(path)
  tables.write_table(path, tables.SUMMARY, rows, list(axes))
  group_by = "model.recurrent_init+model.chrono_t_max"
  write_config(
    path,
    {
      "task.length": (10, 20),
      "model.recurrent_init": ("orthogonal", "identity"),
      "model.chrono_t_max": (None, 40.0),
    },
    **{"report.group_by": group_by},
  )
  exp = report.read_experiment(path)
  assert (exp.x.path, exp.group.path) == ("task.length", group_by)
  assert [exp.group.text(v) for v in exp.group.values] == [
    "orthogonal",
    "orthogonal, chrono T_max = 40",
    "identity",
  ]
  assert exp.choose([exp.x, exp.group]) == {}  # both parts are drawn: nothing fixed away
  d = success.data(exp)
  assert [(s["group"], s["solved"]) for s in d["series"]] == [
    (("orthogonal", None), [2, 0]),
    (("orthogonal", 40.0), [2, 2]),
    (("identity", None), [2, 0]),
  ]
  _, text, noisy = write(path)
  assert not noisy, noisy
  assert "| init + chrono T_max | T = 10 | T = 20 |" in text
  assert "is not an axis" not in text
  # One part that does not vary: the other alone groups the lines.
  exp = report.read_experiment(path).where(
    np.asarray([r["model.chrono_t_max"] is None for r in rows])
  )
  assert exp.group.path == "model.recurrent_init"


def test_report_order_puts_the_named_sections_first(tmp_path):
  from rnnlab.runner import config as runner_config  # noqa: PLC0415

  assert runner_config.REPORT_SECTIONS == report.FIGURES  # the config's check knows them all
  path = make_ablation(str(tmp_path), **{"report.order": ["success_rate", "training_curves"]})
  exp = report.read_experiment(path)
  assert report.present(exp)[:2] == ["success_rate", "training_curves"]
  assert sorted(report.present(exp)) == sorted(report.present(exp.where(exp.column("seed") >= 0)))
  _, text, _ = write(path)
  headings = [line for line in text.splitlines() if line.startswith("## ") and ". " in line]
  assert headings[0].startswith("## 1. Success rate against") and "Training" in headings[1]
  assert headings[2] == "## 3. Gradient norm against lag"
