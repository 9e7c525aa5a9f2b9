"""Every experiment file in experiments/configs/: its presets, and its quick preset end to end.

An experiment file is any module there with a ``get_config`` (a new one is
picked up without touching this file). Its ``quick`` preset runs as a user runs
it (``python -m experiments.run``, a subprocess sharing the runner tests'
compilation cache), and the workdir must hold one ``summary.csv`` row per
member with a column per swept field, and a report with the sections its axes
call for: the gradient norm against the lag, the training curves and the success
rate (against ``config.report.success_x``) always; the gain scan when the file
turns it on; the clipping section when ``clip`` is swept with a threshold on.
The paired (zip) axes of the ablations are checked from their definitions in
``experiments/configs/linked.py``.
"""

from __future__ import annotations

import importlib
import math
import os

import pytest
from runner_support import ROOT, read_csv, run

from experiments import long_findings
from experiments.configs import init_ablation, linked, long, optimizer_ablation
from rnnlab.runner import config as runner_config
from rnnlab.runner import grid as grid_lib
from rnnlab.runner import tables as tables_lib

CONFIG_DIR = os.path.join(ROOT, "experiments", "configs")


def experiment_files() -> list[str]:
  names = []
  for file in sorted(os.listdir(CONFIG_DIR)):
    if file.endswith(".py") and not file.startswith("_"):
      module = importlib.import_module(f"experiments.configs.{file[:-3]}")
      # A runner experiment: the runner's sections (not signal_propagation.py's own command).
      if callable(getattr(module, "get_config", None)) and "sweep" in module.get_config("quick"):
        names.append(file[:-3])
  return names


FILES = experiment_files()
# Quick presets too long for the README's test command (CI runs them with --runslow).
SLOW_QUICK = ("long",)  # 8 compiled programs: every arm on two tasks


def load(name: str):
  return importlib.import_module(f"experiments.configs.{name}")


def test_the_flagship_and_at_least_two_more_experiments_are_files():
  assert "vanishing" in FILES
  assert {"init_ablation", "optimizer_ablation"} <= set(FILES)
  assert "linked" not in FILES  # a helper, not an experiment


@pytest.mark.parametrize("name", FILES)
def test_every_preset_resolves_and_the_docstring_says_how_to_run_it(name):
  module = load(name)
  assert set(module.PRESETS) >= {"quick", "default"}
  for preset in module.PRESETS:
    if preset == "paper":
      continue  # hours of work; its config is checked by the flagship's own tests
    config = runner_config.resolve(module.get_config(preset))
    assert config.preset == preset
    assert config.report.success_x is None or config.report.success_x in config.sweep.axes
    group_by = config.report.group_by
    assert group_by is None or set(group_by.split("+")) <= set(config.sweep.axes)
  doc = module.__doc__
  assert f"--config=experiments/configs/{name}.py:quick" in doc, "the quick command"
  assert "default" in doc and "quick" in doc


# --------------------------------------------------------------------------
# The ablations' axes.
# --------------------------------------------------------------------------


def rows(config):
  """The config's points as dicts ``{path: value}`` (zip mode), fixed fields included."""
  axes = dict(config.sweep.axes)
  n = len(next(iter(axes.values())))
  return [{p: v[i] for p, v in axes.items()} for i in range(n)]


def test_init_ablation_pairs_each_scheme_with_its_fields_and_skips_chrono_without_gates():
  config = init_ablation.get_config()
  assert config.sweep.mode == "zip"
  assert list(config.sweep.axes) == [
    "model.cell",
    "task.length",
    "model.recurrent_init",
    "model.chrono_t_max",
  ]
  points = rows(config)
  cells, lengths = ("elman", "lstm", "gru"), (25, 50, 100)
  assert len(points) == 3 * 3 * 3 + 2 * 3  # every cell x T x 3 schemes, chrono for 2 cells
  assert len({tuple(p.values()) for p in points}) == len(points)  # no point twice
  for cell in cells:
    for T in lengths:
      here = [p for p in points if p["model.cell"] == cell and p["task.length"] == T]
      schemes = {(p["model.recurrent_init"], p["model.chrono_t_max"]) for p in here}
      expected = {("orthogonal", None), ("gaussian", None), ("identity", None)}
      if cell != "elman":
        expected.add(("orthogonal", 100.0))  # chrono: T_max the longest sequence of the sweep
      assert schemes == expected, (cell, T)
  # The Elman cell is the ReLU RNN under every scheme: identity is Le et al.'s IRNN.
  assert config.model.nonlinearity == "relu"
  assert config.task.name == "adding" and config.sweep.seeds >= 5
  assert (config.report.success_x, config.report.group_by) == (
    "task.length",
    "model.recurrent_init+model.chrono_t_max",  # chrono a line apart from plain orthogonal
  )
  # The copy task's sequences are T + 20 long: chrono's T_max follows.
  copy = init_ablation.get_config("task=copy,T=10+20,cell=lstm,scheme=chrono")
  assert copy.task.name == "copy" and copy.model.cell == "lstm"
  assert dict(copy.sweep.axes) == {"task.length": (10, 20)}  # the constant fields are fixed
  assert copy.model.chrono_t_max == 40.0 and copy.model.recurrent_init == "orthogonal"


def test_optimizer_ablation_pairs_each_optimizer_with_its_learning_rate_and_clip():
  config = optimizer_ablation.get_config()
  assert config.sweep.mode == "zip"
  assert list(config.sweep.axes) == [
    "task.name",
    "task.length",
    "optimizer.name",
    "optimizer.learning_rate",
    "clip",
  ]
  points = rows(config)
  arms = {(p["optimizer.name"], p["optimizer.learning_rate"], p["clip"]) for p in points}
  assert arms == {("sgd", 0.1, 0.0), ("sgd", 0.1, 1.0), ("rmsprop", 1e-3, 0.0), ("adam", 1e-3, 0.0)}
  assert len(points) == 2 * 3 * 4  # tasks x T x arms
  assert {p["task.name"] for p in points} == {"temporal_order_2bit", "multiplication"}
  assert config.model.cell == "elman" and config.model.hidden_size == 50  # Pascanu's RNN
  assert config.report.group_by == "optimizer.name"
  # The arguments: arms, tasks, T and per-optimizer learning rates.
  some = optimizer_ablation.get_config("arm=sgd+adam,task=multiplication,T=30,lr_sgd=0.01")
  assert dict(some.sweep.axes) == {
    "optimizer.name": ("sgd", "adam"),
    "optimizer.learning_rate": (0.01, 1e-3),
  }
  assert some.task.name == "multiplication" and some.task.length == 30 and some.clip == 0.0


def test_long_pairs_every_arm_with_every_task_and_length_and_flosses_only_its_flossing_arm():
  config = long.get_config()
  assert config.sweep.mode == "zip"
  points = rows(config)
  lengths = {"adding": (100, 200, 400), "copy": (100, 200)}
  arms = {(a["model.cell"], a["floss.weight"]) for a in long.ARMS.values()}
  assert len(points) == len(arms) * sum(map(len, lengths.values()))
  for task, ts in lengths.items():
    for T in ts:
      here = [p for p in points if p["task.name"] == task and p["task.length"] == T]
      assert {(p["model.cell"], p["floss.weight"]) for p in here} == arms, (task, T)
  flossed = {p["model.cell"] for p in points if p["floss.weight"] > 0}
  assert flossed == {"elman"} and long.FLOSS_WEIGHT > 0
  assert config.model.nonlinearity == "tanh" and config.sweep.seeds >= 5
  assert config.floss.num_exponents <= config.model.hidden_size
  # The members of a row fill the devices' blocks: no padded member.
  assert config.sweep.seeds % (2 * config.run.members_per_block) == 0
  one = long.get_config("task=copy,T=300,arm=lstm+exprnn,floss=0.5")
  assert dict(one.sweep.axes) == {"model.cell": ("lstm", "exprnn")}
  assert (one.task.name, one.task.length, one.floss.weight) == ("copy", 300, 0.0)
  flossing = long.get_config("arm=elman_floss,floss=0.5,T=50")
  assert flossing.floss.weight == 0.5 and flossing.model.cell == "elman"


@pytest.mark.parametrize(
  ("module", "arg", "words"),
  [
    (init_ablation, "scheme=xavier", "'xavier' is not one of"),
    (init_ablation, "T=10+ten", "expected positive ints"),
    (init_ablation, "model.recurrent_init=gaussian", "set by this experiment's rows"),
    (init_ablation, "model.hidden_size=16+32", "takes one value here"),
    (optimizer_ablation, "arm=sgd+lbfgs", "'lbfgs' is not one of"),
    (optimizer_ablation, "lr_adam=0.1+0.2", "one learning rate > 0"),
    (optimizer_ablation, "clip=1", "set by this experiment's rows"),
    (optimizer_ablation, "nosuch=1", "expected a preset or key=value"),
    (long, "arm=elman+rnn", "'rnn' is not one of"),
    (long, "task=adding+mnist", "'mnist' is not one of"),
    (long, "floss=-1", "one weight > 0"),
    (long, "model.cell=gru", "set by this experiment's rows"),
  ],
)
def test_a_bad_argument_is_one_line_naming_it(module, arg, words):
  with pytest.raises(ValueError, match=words) as e:
    module.get_config(arg)
  assert "\n" not in str(e.value) and arg.split("=")[0] in str(e.value)


def test_linked_product_crosses_every_arm_with_the_grid_and_set_axes_fixes_constants():
  arms = [{"a": 1, "b": "x"}, lambda p: None if p["g"] == 2 else {"a": 3, "b": "x"}]
  got = linked.product(arms, {"g": (1, 2)})
  assert got == [
    {"g": 1, "a": 1, "b": "x"},
    {"g": 1, "a": 3, "b": "x"},
    {"g": 2, "a": 1, "b": "x"},
  ]
  with pytest.raises(ValueError, match="same fields"):
    linked.product([{"a": 1}, {"b": 1}], {"g": (1,)})
  config = runner_config.experiment_config()
  rows_ = [
    {"model.cell": "lstm", "task.length": 5, "optimizer.learning_rate": 1},
    {"model.cell": "gru", "task.length": 5, "optimizer.learning_rate": 1},
  ]
  linked.set_axes(config, rows_)
  assert config.sweep.mode == "zip" and dict(config.sweep.axes) == {"model.cell": ("lstm", "gru")}
  assert config.task.length == 5 and config.optimizer.learning_rate == 1.0  # coerced to float


# --------------------------------------------------------------------------
# The quick presets end to end.
# --------------------------------------------------------------------------


@pytest.fixture(
  scope="module",
  params=[pytest.param(f, marks=pytest.mark.slow) if f in SLOW_QUICK else f for f in FILES],
)
def quick(request, tmp_path_factory, runner_env):
  name = request.param
  if name == "vanishing":  # the flagship's run, shared with test_run (conftest)
    workdir = request.getfixturevalue("vanishing_quick")[0]
  else:
    workdir = str(tmp_path_factory.mktemp(f"quick_{name}"))
    config_arg = f"--config=experiments/configs/{name}.py:quick"
    rc, out, err = run([config_arg, f"--workdir={workdir}"], runner_env)
    assert rc == 0, err[-3000:]
  config = runner_config.resolve(load(name).get_config("quick"))
  return name, config, workdir


def test_quick_summary_has_a_column_per_axis_and_a_row_per_member(quick):
  name, config, workdir = quick
  axes = list(config.sweep.axes)
  assert axes, f"{name}: the quick preset sweeps nothing"
  summary = read_csv(os.path.join(workdir, tables_lib.SUMMARY))
  assert list(summary[0]) == list(tables_lib.summary_columns(axes))
  members = grid_lib.members(config)
  assert len(summary) == len(members)
  for row, member in zip(summary, members, strict=True):
    assert int(row["member"]) == member.index and int(row["seed"]) == member.seed
    for path, value in zip(axes, member.values, strict=True):
      assert row[path] == tables_lib.format_value(tables_lib.SUMMARY, path, value), (path, row)
    assert row["cell"] == grid_lib.cell_name(config, member)
    assert int(row["T"]) == grid_lib.length(config, member)
    assert math.isfinite(float(row["final_loss"])) or row["diverged_at"] != "-1"


def expected_sections(config) -> dict[str, bool]:
  """Figure name -> whether the report must have it, from the config's axes alone."""
  axes = dict(config.sweep.axes)
  clips = axes.get("clip", ())
  return {
    "grad_vs_lag": True,
    "decay_vs_gain": bool(config.diagnostics.gain_scan),
    "training_curves": True,
    "success_rate": True,
    "clipping": len(clips) > 1 and any(c for c in clips),
  }


def test_quick_report_has_the_sections_of_its_axes(quick):
  name, config, workdir = quick
  with open(os.path.join(workdir, "report.md")) as f:
    report = f.read()
  for figure, present in expected_sections(config).items():
    png = os.path.join(workdir, "figures", f"{figure}.png")
    if present:
      assert f"(figures/{figure}.png)" in report, (name, figure)
      with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", (name, figure)
    else:
      assert f"figures/{figure}." not in report and not os.path.exists(png), (name, figure)
  assert "Figure skipped" not in report, name
  # The tables and the success figure follow config.report: rows per group, columns per x.
  x = config.report.success_x
  if x == "task.length":
    assert "## Success rate per " in report and " and T\n" in report, name
    assert ". Success rate against T\n" in report, name
  assert "is not an axis that takes two or more values" not in report, name
  for path in config.sweep.axes:
    if len(set(map(repr, config.sweep.axes[path]))) > 1:
      assert f"`{path}`" in report, (name, path)  # the overview names every swept field


def test_long_findings_read_the_quick_run_and_name_every_finding(quick):
  name, config, workdir = quick
  if name != "long":
    pytest.skip("the long experiment's own findings")
  assert long_findings.main([workdir]) == 0
  with open(os.path.join(workdir, "findings.md")) as f:
    text = f.read()
  header = "| finding (paper) | rnnlab measured | agrees? |"
  lines = text.splitlines()
  table = lines[lines.index(header) + 2 : lines.index(header) + 7]
  # the findings, each with a verdict
  assert [line.split("|")[-2].strip() in long_findings.VERDICTS for line in table] == [True] * 5
  assert lines[lines.index(header) + 7] == ""
  cases = {
    (p["task.name"], p["task.length"], p["model.cell"], p["floss.weight"] > 0) for p in rows(config)
  }
  assert text.count("\n| adding |") + text.count("\n| copy |") == len(cases)
