"""The runner's command line: every config field, any flag order, one-line errors, --help.

Parsing runs in-process on a fresh absl ``FlagValues`` (``run.define_flags``), through
the same ``run.parse_flags`` that ``python -m experiments.run`` calls. The subprocess
tests launch the runner and the examples as a user does (exit status, stderr, --help),
the runner's with a ``jax`` that fails on import: a flag error must exit before JAX starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
import typing

import ml_collections
import pytest
from absl import flags

from experiments import run
from experiments.configs import vanishing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "experiments/configs/vanishing.py"
# The fields where None means something (each one's comment in the config says what).
NULLABLE = {
  "model.chrono_t_max",
  "divergence.loss_factor",
  "divergence.max_grad_norm",
  "tbptt.k1",
  "tbptt.k2",
  "diagnostics.gain_scan",
  "run.cpu_opt_level",
  "report.success_x",
  "report.group_by",
}
EXAMPLES = ("hello", "sine", "classify", "tagging", "dates", "generate")
# ml_collections loads config files with importlib's load_module (its business, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def parse(*args: str) -> tuple[ml_collections.ConfigDict, str]:
  """The config and workdir that ``python -m experiments.run *args`` would run with."""
  runner_flags = run.define_flags(flags.FlagValues())
  run.parse_flags(["run", *args], runner_flags)
  return runner_flags.config.value, runner_flags.workdir.value


def parse_error(capsys, *args: str) -> str:
  """The one error line of ``args``, checked to exit with status 2 and to be the only one."""
  with pytest.raises(SystemExit) as exit_info:
    parse(*args)
  lines = capsys.readouterr().err.splitlines()
  assert exit_info.value.code == 2, lines
  assert len(lines) == 1 and lines[0].startswith("run: error: "), lines
  return lines[0]


def leaves(config: ml_collections.ConfigDict, prefix: str = ""):
  """(path, type, value) of every field; an empty ConfigDict (task.kwargs) is a field."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", config.get_type(key), value


def get(config: ml_collections.ConfigDict, path: str):
  for key in path.split("."):
    config = config[key]
  return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config


def optional_base(field_type):
  if typing.get_origin(field_type) in (typing.Union, types.UnionType):
    (base,) = (t for t in typing.get_args(field_type) if t is not type(None))
    return base
  return None


def samples(path: str, field_type, default) -> list[tuple[str, object]]:
  """Command-line values of ``field_type`` (other than ``default``) and what they parse to."""
  assert field_type is not type(None), f"{path} defaults to None without a declared type"
  base = optional_base(field_type)
  out = [("None", None)] if base is not None else []
  base = base or field_type
  if base is bool:
    out.append((str(not default), not default))
  elif base is int:
    out.append((str((default or 0) + 3), (default or 0) + 3))
  elif base is float:
    out.append((repr((default or 0.0) + 0.5), (default or 0.0) + 0.5))
  elif base is str:
    out.append(("something_else", "something_else"))
  elif base is tuple:
    out.append(("(3,4)", (3, 4)))
  elif base is ml_collections.ConfigDict:
    out.append(("{'max_value':3}", {"max_value": 3}))
  elif base is dict:  # sweep.axes: dotted paths to values
    out.append(("{'model.hidden_size':(3,4)}", {"model.hidden_size": (3, 4)}))
  else:
    raise AssertionError(f"{path}: no sample value for its type {field_type}")
  return out


FIELDS = [path for path, _, _ in leaves(vanishing.get_config())]


def test_the_walk_reaches_every_section():
  sections = {path.split(".")[0] for path in FIELDS}
  training = {"task", "model", "optimizer", "clip", "batch_size", "num_steps", "eval", "tbptt"}
  training |= {"diagnostics_every", "divergence", "floss"}
  assert sections == {"preset", "sweep", "diagnostics", "run", "report", *training}
  assert len(FIELDS) > 60 and "task.kwargs" in FIELDS and NULLABLE.issubset(FIELDS)
  assert "sweep.axes" in FIELDS and "model.dropout.recurrent" in FIELDS


@pytest.mark.parametrize("path", FIELDS)
def test_every_field_takes_a_value_of_its_type_in_every_preset(path):
  for preset in vanishing.PRESETS:
    (field_type, default) = next(
      (t, v) for p, t, v in leaves(vanishing.get_config(preset)) if p == path
    )
    for text, expected in samples(path, field_type, default):
      config, _ = parse(f"--config={CONFIG}:{preset}", f"--config.{path}={text}")
      assert get(config, path) == expected, (preset, path, text)
      assert path == "preset" or config.preset == preset


def test_exactly_the_fields_where_none_means_something_take_none(capsys):
  config = vanishing.get_config()
  assert {path for path, t, _ in leaves(config) if optional_base(t) is not None} == NULLABLE
  for path in NULLABLE:
    parsed, _ = parse(f"--config.{path}=None", f"--config={CONFIG}:paper")
    assert get(parsed, path) is None, path
  line = parse_error(capsys, "--config.optimizer.learning_rate=None")
  assert "'optimizer.learning_rate'" in line and line.endswith("expected a float")


def test_fields_that_default_to_none_take_values():
  config, _ = parse(
    f"--config={CONFIG}:quick",
    "--config.sweep.axes={'optimizer.learning_rate': (0.1, 0.01), 'model.gain': (0.9, 1.1)}",
    "--config.tbptt.k1=8",
    "--config.model.chrono_t_max=10",
    "--config.run.cpu_opt_level=None",
    "--config.diagnostics.gain_scan=()",
  )
  assert config.sweep.axes == {"optimizer.learning_rate": (0.1, 0.01), "model.gain": (0.9, 1.1)}
  assert config.model.chrono_t_max == 10.0 and config.run.cpu_opt_level is None
  assert config.diagnostics.gain_scan == () and config.tbptt.k1 == 8
  assert config.model.hidden_size == 8  # still the quick preset


def test_flags_parse_in_any_order():
  overrides = [
    "--config.optimizer.learning_rate=0.5",
    "--config.diagnostics.phases=('trained',)",
    "--noconfig.run.plots",
  ]
  expected, expected_workdir = parse(f"--config={CONFIG}:quick", *overrides, "--workdir=/tmp/w")
  assert expected.optimizer.learning_rate == 0.5 and expected.diagnostics.phases == ("trained",)
  assert not expected.run.plots and expected.preset == "quick" and expected_workdir == "/tmp/w"
  orders = [
    [*overrides, f"--config={CONFIG}:quick", "--workdir=/tmp/w"],
    [
      overrides[0],
      "--workdir",
      "/tmp/w",
      overrides[1],
      "--config",
      f"{CONFIG}:quick",
      overrides[2],
    ],
    ["--workdir=/tmp/w", overrides[2], f"--config={CONFIG}:quick", *overrides[:2]],
    # a tuple field given once per element, and a field's value as the next argument
    [
      f"--config={CONFIG}:quick",
      "--config.diagnostics.phases=trained",
      *overrides[::2],
      "--workdir=/tmp/w",
    ],
    [
      f"--config={CONFIG}:quick",
      "--config.diagnostics.phases",
      "('trained',)",
      *overrides[::2],
      "--workdir=/tmp/w",
    ],
  ]
  for args in orders:
    config, workdir = parse(*args)
    assert config.to_dict() == expected.to_dict() and workdir == "/tmp/w", args
  # Without --config: the default config file and preset.
  config, _ = parse(*overrides)
  assert config.preset == "default" and config.optimizer.learning_rate == 0.5
  config, _ = parse(
    "--config.diagnostics.phases=init", "--config.diagnostics.phases=trained", "--config.run.plots"
  )
  assert config.diagnostics.phases == ("init", "trained") and config.run.plots


# (arguments, the error line, or the parts it must contain). The issue's command lines first.
ISSUE_ERRORS = [
  (
    ["--config.optimizer.learning_rat=1", f"--config={CONFIG}:quick"],
    "unknown config field 'optimizer.learning_rat' in --config.optimizer.learning_rat=1; "
    "did you mean 'optimizer.learning_rate'?",
  ),
  (
    [f"--config={CONFIG}:quick", "--config.optimizer.learning_rat=1"],
    "unknown config field 'optimizer.learning_rat' in --config.optimizer.learning_rat=1; "
    "did you mean 'optimizer.learning_rate'?",
  ),
  (
    ["--config.optimizer.learning_rat=1"],  # the default config file
    "unknown config field 'optimizer.learning_rat' in --config.optimizer.learning_rat=1; "
    "did you mean 'optimizer.learning_rate'?",
  ),
  (
    [f"--config={CONFIG}:quick", "--config.sweep.seed=3"],
    "unknown config field 'sweep.seed' in --config.sweep.seed=3; did you mean 'sweep.seeds'?",
  ),
  (["--config.nosuchfield=1"], ("unknown config field 'nosuchfield'",)),
  (
    [f"--config={CONFIG}:quick,paper"],
    ("two presets, 'quick' and 'paper', in the config argument 'quick,paper'",),
  ),
  (
    [f"--config={CONFIG}:T=10,20"],
    ("unknown preset '20'", "joined by '+': T=10+20"),
  ),
  (
    [f"--config={CONFIG}:quick,cell=lstm,gru,T=5"],
    ("unknown preset 'gru'", "joined by '+': cell=lstm+gru"),
  ),
  (
    [f"--config={CONFIG}:quick", "--config.optimizer.learning_rate=fast"],
    "bad value 'fast' for config field 'optimizer.learning_rate' in "
    "--config.optimizer.learning_rate=fast; expected a float",
  ),
  (
    [f"--config={CONFIG}:quick", "--config.diagnostics.phases=(init,"],
    ("bad value '(init,' for config field 'diagnostics.phases'", "expected a tuple"),
  ),
]
ERRORS = [
  *ISSUE_ERRORS,
  (
    [f"--config={CONFIG}:quick", "--config.sweep.axes={'model.cell': ('lstm',)"],
    ("bad value", "for config field 'sweep.axes'", "expected a dict such as"),
  ),
  (
    [f"--config={CONFIG}:quick,model.hidden_sise=8+16"],
    ("unknown config field 'model.hidden_sise'", "did you mean 'model.hidden_size'?"),
  ),
  ([f"--config={CONFIG}:quik"], ("unknown preset 'quik'", "did you mean 'quick'?")),
  ([f"--config={CONFIG}:fastest"], ("unknown preset 'fastest'",)),
  (["--config.model.hidden_size=1.5"], ("'model.hidden_size'", "expected an int")),
  (["--config.run.plots=maybe"], ("'run.plots'", "expected True or False")),
  (["--config.run.cpu_opt_level=fast"], ("'run.cpu_opt_level'", "expected an int or None")),
  (
    ["--config.diagnostics.phases", "(0.1,"],
    ("'diagnostics.phases'", "in --config.diagnostics.phases (0.1,;", "a tuple"),
  ),
  (["--config.task.kwargs=3"], ("'task.kwargs'", "expected a dict")),
  (["--config.num_steps"], ("--config.num_steps needs a value",)),
  (["--noconfig.optimizer.learning_rate"], ("only a bool field takes the 'no' prefix",)),
  (["--config.sweep.axes=3"], ("'sweep.axes'", "expected a dict such as")),
  (["--config.model=3"], ("'model' in --config.model=3 is a section of the config",)),
  (["--config=experiments/configs/nosuch.py"], ("no config file",)),
  ([f"--config={CONFIG}:quick", f"--config={CONFIG}:paper"], ("--config given 2 times",)),
  (["--workdr=/tmp/x"], ("Unknown command line flag 'workdr'", "workdir")),
  (["--workdir=/tmp/x", "quick"], ("unexpected arguments ['quick']",)),
]


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_bad_flags_are_one_line_and_exit_2(capsys, args, message):
  line = parse_error(capsys, *args)
  if isinstance(message, str):
    assert line == f"run: error: {message}"
  else:
    for part in message:
      assert part in line, (part, line)


@pytest.fixture(scope="module")
def no_jax_env(tmp_path_factory):
  """The environment of a runner whose ``import jax`` fails (flag errors must not get there)."""
  fake = tmp_path_factory.mktemp("fake_jax")
  (fake / "jax").mkdir()
  (fake / "jax" / "__init__.py").write_text(
    "raise ImportError('jax imported while parsing flags')\n"
  )
  return {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), ROOT])}


def launch(module: str, args: list[str], env: dict) -> subprocess.Popen:
  return subprocess.Popen(
    [sys.executable, "-m", module, *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def test_the_runner_exits_2_with_one_line_before_jax(no_jax_env):
  """The issue's command lines, launched side by side, under a jax that cannot be imported."""
  # Checked after the flags, before JAX: the config file of another command.
  other = (
    ["--config=experiments/configs/signal_propagation.py:quick", "--workdir=/tmp/x"],
    ("not an experiment of the runner", "no sweep"),
  )
  cases = [*ISSUE_ERRORS, other]
  procs = [(launch("experiments.run", args, no_jax_env), msg) for args, msg in cases]
  for proc, message in procs:
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err[-2000:]
    parts = (message,) if isinstance(message, str) else message
    assert lines[0].startswith("run: error: ") and all(p in lines[0] for p in parts), lines


def test_runner_help_exits_0_and_lists_the_fields_with_their_types(no_jax_env):
  helps = ["--help", "-h", "--helpshort", "--helpfull", "-?"]
  procs = [launch("experiments.run", [flag, "--config.nosuch=1"], no_jax_env) for flag in helps]
  for flag, proc in zip(helps, procs, strict=True):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (flag, err[-2000:])
    text = out + err
    assert "--config" in text and "--workdir" in text and "Exit status" in text, flag
    for path in FIELDS:
      assert f"--config.{path}=" in text, (flag, path)
    assert "--config.sweep.seeds=5 (int): seeds per grid point" in text
    assert "--config.sweep.axes={'model.cell': ('elman', 'lstm', 'gru'), " in text
    assert "--config.optimizer.b1=0.9 (float): " in text  # a training field, from its schema
    assert "--config.run.cpu_opt_level=1 (int or None): CPU-only hosts" in text
  # The fields and defaults are those of the --config given, preset included.
  other = "experiments/configs/optimizer_ablation.py"
  proc = launch("experiments.run", [f"--config={other}:quick", "--help"], no_jax_env)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  assert f"Config fields of {other} (defaults of get_config('quick')):" in out + err
  assert "--config.report.order=('success_rate', 'clipping') (tuple): " in out + err
  assert "--config.num_steps=60 (int): " in out + err


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_help_exits_0_and_names_its_flags(example):
  with open(os.path.join(ROOT, "experiments", "examples", f"{example}.py")) as f:
    names = re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", f.read())
  assert len(names) >= 5, names
  proc = launch(f"experiments.examples.{example}", ["--help"], {**os.environ, "PYTHONPATH": ROOT})
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  for name in names:
    assert f"--{name}:" in out or f"--[no]{name}:" in out, name


def test_example_short_help_exits_0_and_a_bad_flag_2_with_one_line():
  env = {**os.environ, "PYTHONPATH": ROOT}
  procs = [launch("experiments.examples.hello", [flag], env) for flag in ("-h", "--no_such_flag")]
  out, err = procs[0].communicate(timeout=120)
  assert procs[0].returncode == 0 and "--epochs:" in out, err[-2000:]
  _, err = procs[1].communicate(timeout=120)
  assert procs[1].returncode == 2, err[-2000:]
  assert err.strip().splitlines() == ["hello.py: error: Unknown command line flag 'no_such_flag'"]


def test_importing_the_runner_does_not_import_jax(no_jax_env):
  code = "import sys, experiments.run; assert not [m for m in sys.modules if m.startswith('jax')]"
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=no_jax_env, capture_output=True)
  assert done.returncode == 0, done.stderr[-2000:]
