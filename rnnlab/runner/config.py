r"""The experiment config: the training config plus ``sweep``, ``diagnostics``, ``run``, ``report``.

An experiment is one ``ml_collections.ConfigDict``: every field of
:func:`rnnlab.train.default_config` (task, model, optimizer, clipping, batch size,
steps, evaluation, TBPTT, divergence), each a default for every member, plus four
sections that only the runner reads:

``sweep``
  ``axes``: a dict from a dotted path of a training field to its values, e.g.
  ``{"model.cell": ("lstm", "gru"), "model.hidden_size": (32, 64),
  "optimizer.learning_rate": (1e-3, 3e-3)}`` (``task.kwargs.<name>`` and
  ``eval.task_kwargs.<name>`` name a task option); ``mode``: ``"grid"`` (the
  cartesian product of the axes, the last axis fastest) or ``"zip"`` (the i-th
  values of every axis together; equal lengths); ``seeds`` runs per point, seeds
  ``seed_offset .. seed_offset + seeds - 1``, the fastest index of all.
``diagnostics``
  the gradient-flow measurements of every member (``phases``: at initialisation
  and after training) and the untrained scan over the recurrent gain
  (``gain_scan``, off unless given gains).
``run``
  how the work runs: chunks and checkpoints, devices, block size, threads.
``report``
  what the report reads: ``solve_window`` (steps-to-solve's trailing window) and
  its figure choices.

On the command line (``python -m experiments.run``) every field takes
``--config.<path>=<value>``, the axes a dict literal
(``--config.sweep.axes="{'model.hidden_size': (32, 64)}"``), and the argument
after the config file's ``:`` a preset and shortcuts (:func:`parse_arg`):
``:quick,cell=lstm+gru,T=50+100,model.hidden_size=32+64`` sets the axes of
:data:`SHORTCUTS` and of any dotted path (values joined by ``+``).

:func:`resolve` checks the four sections and the axes, and every member's
concrete training config with :func:`rnnlab.train.check_config` (through
:func:`rnnlab.runner.grid.check_members`): each setting is checked in one
place, before any work. This module imports no JAX until :func:`resolve` runs, so a
command line can load a config file and report a bad flag before JAX starts.
"""

from __future__ import annotations

import ast
import copy
import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

SECTIONS = ("sweep", "diagnostics", "run", "report")
META = ("preset",)  # the preset that filled an experiment file's defaults (shown by the report)
MODES = ("grid", "zip")
PHASES = ("init", "trained")
# The shortcuts of a config argument (``path:cell=lstm+gru,T=50``) and the paths they set.
SHORTCUTS = {
  "cell": "model.cell",
  "T": "task.length",
  "gain": "model.gain",
  "lr": "optimizer.learning_rate",
  "clip": "clip",
  "task": "task.name",
  "seeds": "sweep.seeds",
}
# Fields that change no number of the sweep: a workdir may be resumed with other values.
# (run.cpu_opt_level is not among them: it changes XLA's code and so the last bits; the
# report's fields only change what is read from the checkpoints, which is recomputed.)
RUN_ONLY_FIELDS = (
  "run.checkpoint_seconds",
  "run.compile_threads",
  "run.devices",
  "run.distributed",
  "run.plots",
  "report.solve_window",
  "report.success_x",
  "report.group_by",
  "report.order",
)
# The report's figure sections, in their default order (rnnlab.report.FIGURES).
REPORT_SECTIONS = ("grad_vs_lag", "decay_vs_gain", "training_curves", "success_rate", "clipping")
# Training fields whose default is None or where None means "off": typed, so that
# --config.<field>=<value> parses a value and --config.<field>=None turns them off.
_NULLABLE = {
  "model.chrono_t_max": float,
  "divergence.loss_factor": float,
  "divergence.max_grad_norm": float,
  "tbptt.k1": int,
  "tbptt.k2": int,
}
# Open dicts of the training config whose entries an axis may name (task options).
OPEN_FIELDS = ("task.kwargs", "eval.task_kwargs")


def optional(field_type: type, default: Any = None) -> config_dict.FieldReference:
  """A field of type ``field_type | None``, for the fields where None means something.

  The explicit type lets ``--config.<field>=<value>`` set a field whose default is None
  (parsed as a ``field_type``), and ``--config.<field>=None`` one whose default is not.
  """
  return config_dict.FieldReference(default, field_type=field_type | None)


def experiment_config(base: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """An experiment config: ``base`` (default :func:`rnnlab.train.default_config`) plus 4 sections.

  Every field is commented below (``python -m experiments.run --help`` lists them).

  Args:
    base: a training config to start from (copied, not changed).

  Returns:
    A locked ``ConfigDict``.
  """
  from rnnlab import train_config  # noqa: PLC0415  (JAX-free: the schema of the training config)

  config = train_config.default_config() if base is None else copy.deepcopy(base)
  config.unlock()
  for path, kind in _NULLABLE.items():
    section, key = _parent(config, path)
    value = section[key]
    del section[key]
    section[key] = optional(kind, None if value is None else kind(value))

  config.preset = "default"  # the preset of the experiment file that filled the defaults

  # A plain dict of axes (convert_dict=False keeps its dotted keys and their order).
  config.sweep = ml_collections.ConfigDict(convert_dict=False)
  config.sweep.axes = {}  # dotted training field -> its values, e.g. {"model.cell": ("lstm",
  # "gru"), "model.hidden_size": (32, 64)}; each value axis is vmapped, each other one a program
  config.sweep.mode = "grid"  # grid: every combination of the axes' values; zip: the i-th
  # value of every axis together (equal lengths)
  config.sweep.seeds = 1  # runs per point of the axes, seeds seed_offset .. seed_offset+seeds-1
  config.sweep.seed_offset = 0  # the first seed

  config.diagnostics = ml_collections.ConfigDict()
  config.diagnostics.phases = PHASES  # when every member's diagnostics are measured: "init"
  # (before training) and/or "trained" (after); () measures none
  config.diagnostics.batch_size = 32  # held-out sequences for ||dL/dh_t|| and Lyapunov
  config.diagnostics.horizon_fraction = 0.01  # memory horizon: largest lag with norm >= this
  # fraction of the norm at lag 0
  config.diagnostics.lyapunov_transient = 0.25  # share of the steps left out of the Lyapunov mean
  config.diagnostics.gain_scan = optional(tuple, ())  # gains of the untrained decay-versus-gain
  # scan of every swept cell (empty or None: no scan)
  config.diagnostics.gain_scan_T = 0  # T of the gain scan (0: the largest T of the sweep)
  config.diagnostics.gain_scan_seeds = 3  # seeds per (cell, gain) in the gain scan

  config.run = ml_collections.ConfigDict()
  config.run.chunk_steps = 100  # updates per compiled chunk; state is saved between chunks
  config.run.checkpoint_seconds = 30.0  # save the sweep state at most this often (0: every chunk)
  config.run.devices = 0  # devices for the sweep axis (0: all; a CPU-only host is split into
  # one XLA device per core, at least 2: jax_num_cpu_devices, XLA's
  # --xla_force_host_platform_device_count; several processes: the total, a multiple of
  # their number, split evenly)
  config.run.cpu_opt_level = optional(int, 1)  # CPU-only hosts: XLA's LLVM optimisation
  # level; 1 compiles about 2x faster than XLA's default at the same speed (None: XLA's default)
  config.run.members_per_block = 2  # members vmapped together on a device (raise it on a
  # GPU); a member's numbers depend on this size, the same on any number of devices from 2
  # (rnnlab.runner.devices); a group of fewer members is one block on one device
  config.run.compile_threads = 2  # threads compiling the next groups' programs ahead (0: off)
  config.run.distributed = False  # several processes, found by jax.distributed.initialize()
  # in the environment (srun, mpirun, JAX_COORDINATOR_ADDRESS); or give the runner
  # --coordinator, --num_processes and --process_id instead
  config.run.metrics_every = 1  # metrics.csv keeps every this-many-th step (and the last)
  config.run.plots = True  # write the PNG/SVG figures and report.md at the end

  config.report = ml_collections.ConfigDict()
  config.report.solve_window = 50  # steps-to-solve: first step whose trailing mean of this
  # many training losses and metrics meets the task's `solved` criterion
  config.report.success_x = optional(str)  # the axis on the success figure's x axis (None:
  # chosen from the axes)
  config.report.group_by = optional(str)  # the axis whose values are the figures' lines (None:
  # chosen from the axes); several joined by '+': a line per combination of their values
  config.report.order = ()  # figure sections to give first, in this order (the others follow
  # in the default order): names among REPORT_SECTIONS, e.g. ("success_rate",)
  config.lock()
  return config


def quick_settings(
  config: ml_collections.ConfigDict, *, num_steps: int = 60, hidden_size: int | None = 8
) -> None:
  """Sets the small sizes of an experiment file's ``quick`` preset (the CI smoke run).

  ``num_steps`` updates of batch 16 (``hidden_size`` units unless None), 2 seeds,
  a held-out batch of 64, 8 diagnostic sequences, chunks of 20 steps with a
  checkpoint after each, and a 10-step solve window.
  """
  if hidden_size is not None:
    config.model.hidden_size = hidden_size
  config.num_steps = num_steps
  config.batch_size = 16
  config.eval.batch_size = 64
  config.eval.num_batches = 1
  config.report.solve_window = 10
  config.sweep.seeds = 2
  config.diagnostics.batch_size = 8
  config.run.chunk_steps = 20
  config.run.checkpoint_seconds = 0.0


def paper_settings(config: ml_collections.ConfigDict) -> None:
  """Sets the published scale of an experiment file's ``paper`` preset (Arjovsky et al. 2016).

  128 units, RMSProp at 1e-3, batch 20, 20000 updates, 5 seeds; chunks of 500
  updates, a checkpoint at most every 5 minutes, ``metrics.csv`` every 20th step.
  """
  config.model.hidden_size = 128
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 20
  config.num_steps = 20000
  config.sweep.seeds = 5
  config.run.chunk_steps = 500
  config.run.checkpoint_seconds = 300.0
  config.run.metrics_every = 20


# --------------------------------------------------------------------------
# Paths.
# --------------------------------------------------------------------------


def _parent(config: ml_collections.ConfigDict, path: str) -> tuple[Any, str]:
  """The section holding ``path``'s last key, and that key; KeyError if a section is missing."""
  *sections, key = path.split(".")
  node = config
  for name in sections:
    if not isinstance(node, ml_collections.ConfigDict) or name not in node:
      raise KeyError(path)
    node = node[name]
  if not isinstance(node, ml_collections.ConfigDict):
    raise KeyError(path)
  return node, key


def training_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Every training field of an experiment config by dotted path, with its type.

  The four runner sections and :data:`META` are not training fields; an open dict
  (``task.kwargs``) is one field.
  """
  out = {}

  def walk(node: ml_collections.ConfigDict, prefix: str) -> None:
    for key, value in node.items():
      path = f"{prefix}{key}"
      if not prefix and key in (*SECTIONS, *META):
        continue
      if isinstance(value, ml_collections.ConfigDict) and path not in OPEN_FIELDS:
        walk(value, f"{path}.")
      else:
        out[path] = node.get_type(key)

  walk(config, "")
  return out


def check_path(config: ml_collections.ConfigDict, path: Any, where: str) -> None:
  """Raises a one-line ``ValueError`` unless ``path`` names a training field (or task option)."""
  fields = training_fields(config)
  if not isinstance(path, str):
    raise ValueError(f"{where}: {path!r} is not a dotted field path; expected e.g. 'model.cell'")
  if path in fields:
    return
  if any(path.startswith(f"{open_field}.") and path.count(".") == 2 for open_field in OPEN_FIELDS):
    return
  if path.split(".")[0] in (*SECTIONS, *META):
    raise ValueError(
      f"{where}: {path!r} is a field of the runner, not of the training config; only training "
      "fields (task, model, optimizer, clip, batch_size, num_steps, eval, tbptt, divergence) "
      "can be swept"
    )
  if any(field.startswith(f"{path}.") for field in fields):
    raise ValueError(f"{where}: {path!r} is a section of the config; expected one of its fields")
  close = difflib.get_close_matches(path, list(fields), n=1)
  hint = f"did you mean {close[0]!r}?" if close else "expected a dotted training field"
  raise ValueError(f"{where}: unknown config field {path!r}; {hint}")


def field_type(config: ml_collections.ConfigDict, path: str) -> Any:
  """The declared type of a training field (``float | None`` for an optional float), or None."""
  try:
    section, key = _parent(config, path)
  except KeyError:
    return None
  return section.get_type(key) if key in section else None


def _is_number(value: Any) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


def coerce(config: ml_collections.ConfigDict, path: str, value: Any) -> Any:
  """``value`` as the field at ``path`` stores it: an int in a float field becomes a float."""
  kind = field_type(config, path)
  floats = kind is float or kind == (float | None)
  if floats and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value


# --------------------------------------------------------------------------
# The config argument: a preset and shortcuts.
# --------------------------------------------------------------------------


def parse_arg(arg: str | None, presets: Sequence[str], default: str = "default"):
  """``"[preset][,key=v1+v2...]"`` -> ``(preset, [(key, text), ...])``.

  A part without ``=`` is a preset of ``presets`` (at most one); ``key`` is a
  shortcut of :data:`SHORTCUTS` or a dotted field path (checked by :func:`apply_shortcuts`).

  Raises:
    ValueError: one line: an unknown preset (with the likeliest fix), two presets, an
      empty value.
  """
  preset, shortcuts = None, []
  arg = arg or ""
  parts = [p.strip() for p in arg.split(",")]
  for i, part in enumerate(parts):
    if not part:
      continue
    if "=" not in part:
      if part not in presets:
        raise ValueError(_unknown_preset(arg, parts, i, presets))
      if preset is not None:
        raise ValueError(
          f"two presets, {preset!r} and {part!r}, in the config argument {arg!r}; give at "
          f"most one of {tuple(presets)}"
        )
      preset = part
      continue
    key, value = (s.strip() for s in part.split("=", 1))
    if not key or not value:
      raise ValueError(
        f"bad config argument {part!r}; expected a preset {tuple(presets)} or key=value with "
        f"key in {tuple(SHORTCUTS)} or a dotted field path"
      )
    shortcuts.append((key, value))
  return preset or default, shortcuts


def _unknown_preset(arg: str, parts: list[str], i: int, presets: Sequence[str]) -> str:
  """The message for ``parts[i]``, neither a preset nor a shortcut, with the likeliest fix."""
  message = (
    f"unknown preset {parts[i]!r} in the config argument {arg!r}; expected one of {tuple(presets)}"
  )
  if i > 0 and "=" in parts[i - 1]:  # T=10,20: more values of the shortcut before it
    values = [parts[i - 1]]
    for part in parts[i:]:
      if not part or "=" in part or part in presets:
        break
      values.append(part)
    return f"{message}; the values of a shortcut are joined by '+': {'+'.join(values)}"
  close = difflib.get_close_matches(parts[i], list(presets), n=1)
  return f"{message}; did you mean {close[0]!r}?" if close else message


def _parse_value(text: str, kind: Any) -> Any:
  """One shortcut value as the field's type: ``int``, ``float``, ``bool``, ``str`` or a literal."""
  text = text.strip()
  if text == "None":
    return None
  base = kind
  if kind is not None and not isinstance(kind, type):  # T | None
    others = [t for t in getattr(kind, "__args__", ()) if t is not type(None)]
    base = others[0] if len(others) == 1 else None
  if base is bool:
    if text in ("True", "true", "1"):
      return True
    if text in ("False", "false", "0"):
      return False
    raise ValueError(text)
  if base is int:
    return int(text)
  if base is float:
    return float(text)
  if base is str:
    return text
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_shortcuts(config: ml_collections.ConfigDict, shortcuts: Sequence[tuple[str, str]]):
  """Applies ``parse_arg``'s shortcuts to ``config`` (in place; unlocks nothing).

  ``key=v1+v2+...`` sets the axis of ``SHORTCUTS.get(key, key)`` to those values
  (replacing its values where it is already an axis, else appended to the axes),
  each parsed as its field's type; ``seeds=n`` sets ``sweep.seeds``; ``task=name``
  (one value) sets ``task.name``.

  Raises:
    ValueError: one line: an unknown key (with the nearest field), a value that is not
      of its field's type.
  """
  axes = dict(config.sweep.axes)
  for key, text in shortcuts:
    path = SHORTCUTS.get(key, key)
    if path == "sweep.seeds":
      try:
        config.sweep.seeds = int(text)
      except ValueError:
        raise ValueError(f"bad config argument seeds={text!r}; expected an int") from None
      continue
    if "." not in key and key not in SHORTCUTS and key not in training_fields(config):
      raise ValueError(
        f"bad config argument {key}={text}; expected a preset or key=value with key in "
        f"{tuple(SHORTCUTS)} or a dotted field path such as model.hidden_size"
      )
    check_path(config, path, f"config argument {key}={text}")
    kind = field_type(config, path)
    try:
      values = tuple(coerce(config, path, _parse_value(v, kind)) for v in text.split("+"))
    except ValueError:
      expected = getattr(kind, "__name__", str(kind))
      raise ValueError(
        f"bad config argument {key}={text!r}; expected values of {path} ({expected}) joined by '+'"
      ) from None
    if key == "task" and len(values) == 1:
      config.task.name = values[0]
      axes.pop(path, None)
    else:
      axes[path] = values
  config.sweep.axes = axes


# --------------------------------------------------------------------------
# Checks.
# --------------------------------------------------------------------------


def _fail(field: str, value: Any, expected: str) -> None:
  raise ValueError(f"config.{field}={value!r} is invalid; expected {expected}")


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(field: str, value: Any) -> None:
  if not _is_int(value) or value < 1:
    _fail(field, value, "a positive int")


def _hashable(value: Any) -> Any:
  return tuple(value) if isinstance(value, list) else value


def _axes(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """``config.sweep.axes`` checked, each value a tuple (one value: a one-value axis)."""
  axes = config.sweep.axes
  if axes is None:
    return {}
  if not isinstance(axes, Mapping):
    _fail("sweep.axes", axes, "a dict from dotted training fields to tuples of values")
  out = {}
  for path, values in axes.items():
    check_path(config, path, "config.sweep.axes")
    if isinstance(values, str) or not isinstance(values, Sequence):
      values = (values,)
    values = tuple(coerce(config, path, _hashable(v)) for v in values)
    if not values:
      _fail(f"sweep.axes[{path!r}]", values, "a non-empty tuple of values")
    for v in values:
      if isinstance(v, float) and not math.isfinite(v):
        _fail(f"sweep.axes[{path!r}]", values, "finite numbers (inf or nan is no setting)")
    if config.sweep.mode == "grid" and len(set(map(repr, values))) != len(values):
      _fail(f"sweep.axes[{path!r}]", values, "distinct values")
    out[path] = values
  return out


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A checked, locked copy of an experiment config (its axes as tuples).

  Checks the four runner sections and the axes here, and every member's
  concrete training config with :func:`rnnlab.train.check_config`, every group's
  task and cell (:func:`rnnlab.runner.grid.check_members`): nothing is computed
  before every setting of every member is known to be valid.

  Raises:
    ValueError: one line naming the first bad field, its value and what was expected.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"an experiment config must be an ml_collections.ConfigDict; got {config!r}")
  config = copy.deepcopy(config)
  config.unlock()
  for section in (*SECTIONS, "task", "model", "optimizer"):
    if section not in config or not isinstance(config[section], ml_collections.ConfigDict):
      _fail(section, config.get(section), "a section (see rnnlab.runner.config.experiment_config)")
  s = config.sweep
  if s.mode not in MODES:
    _fail("sweep.mode", s.mode, f"one of {MODES}")
  axes = _axes(config)
  if s.mode == "zip" and len({len(v) for v in axes.values()}) > 1:
    lengths = {p: len(v) for p, v in axes.items()}
    _fail("sweep.axes", lengths, "axes of equal lengths in zip mode (the i-th values go together)")
  s.axes = axes
  _positive_int("sweep.seeds", s.seeds)
  if not _is_int(s.seed_offset) or s.seed_offset < 0:
    _fail("sweep.seed_offset", s.seed_offset, "an int >= 0")
  _check_diagnostics(config.diagnostics)
  _check_run(config.run)
  _check_report(config)
  config.lock()
  from rnnlab.runner import grid  # noqa: PLC0415  (imports JAX)

  grid.check_members(config)
  return config


def _check_diagnostics(d: ml_collections.ConfigDict) -> None:
  phases = d.phases
  if isinstance(phases, str) or not isinstance(phases, Sequence) or set(phases) - set(PHASES):
    _fail("diagnostics.phases", phases, f"a tuple of {PHASES} (() for none)")
  d.phases = tuple(p for p in PHASES if p in phases)
  _positive_int("diagnostics.batch_size", d.batch_size)
  if not _is_number(d.horizon_fraction) or not 0 < d.horizon_fraction <= 1:
    _fail("diagnostics.horizon_fraction", d.horizon_fraction, "a number in (0, 1]")
  if not _is_number(d.lyapunov_transient) or not 0 <= d.lyapunov_transient < 1:
    _fail("diagnostics.lyapunov_transient", d.lyapunov_transient, "a share in [0, 1)")
  scan = () if d.gain_scan is None else d.gain_scan
  if isinstance(scan, str) or not isinstance(scan, Sequence):
    _fail("diagnostics.gain_scan", d.gain_scan, "a tuple of gains (empty: no scan)")
  for g in scan:
    if not _is_number(g) or not math.isfinite(g):
      _fail("diagnostics.gain_scan", d.gain_scan, "finite gains")
  d.gain_scan = tuple(float(g) for g in scan)
  if not _is_int(d.gain_scan_T) or d.gain_scan_T < 0:
    _fail("diagnostics.gain_scan_T", d.gain_scan_T, "an int >= 0 (0: the largest T of the sweep)")
  _positive_int("diagnostics.gain_scan_seeds", d.gain_scan_seeds)


def _check_run(r: ml_collections.ConfigDict) -> None:
  if not _is_int(r.compile_threads) or r.compile_threads < 0:
    _fail("run.compile_threads", r.compile_threads, "an int >= 0 (0: compile on first use)")
  for field in ("chunk_steps", "metrics_every", "members_per_block"):
    _positive_int(f"run.{field}", r[field])
  if not _is_int(r.devices) or r.devices < 0:
    _fail("run.devices", r.devices, "an int >= 0 (0: all devices)")
  if not _is_number(r.checkpoint_seconds) or r.checkpoint_seconds < 0:
    _fail("run.checkpoint_seconds", r.checkpoint_seconds, "a number >= 0")
  level = r.cpu_opt_level
  if level is not None and (not _is_int(level) or not 0 <= level <= 3):
    _fail("run.cpu_opt_level", level, "None or an int in [0, 3]")
  for field in ("distributed", "plots"):
    if not isinstance(r[field], bool):
      _fail(f"run.{field}", r[field], "True or False")


def _check_report(config: ml_collections.ConfigDict) -> None:
  """The report's settings: axes by training field path (or ``seed``, ``cell``, ``T``).

  A field that is not swept is accepted (the report notes it and chooses by
  itself: an experiment file's own choice may outlive the arguments that
  narrowed its axes); a path that names no field is a typo, and an error.
  """
  r = config.report
  _positive_int("report.solve_window", r.solve_window)
  order = r.order
  if (
    not isinstance(order, list | tuple)
    or len(set(order)) != len(order)
    or not set(order) <= set(REPORT_SECTIONS)
  ):
    _fail("report.order", order, f"a tuple of distinct names among {REPORT_SECTIONS}")
  extra = ("seed", "cell", "T")
  for field in ("success_x", "group_by"):
    value = r[field]
    if value is None:
      continue
    parts = str(value).split("+") if field == "group_by" else [value]
    for part in parts:
      if part in extra:
        continue
      try:
        check_path(config, part, f"config.report.{field}={value!r}")
      except ValueError as e:
        joined = " or several joined by '+'" if field == "group_by" else ""
        raise ValueError(f"{e} (None, a swept field{joined}, or one of {extra})") from None


__all__ = [
  "META",
  "MODES",
  "OPEN_FIELDS",
  "PHASES",
  "REPORT_SECTIONS",
  "RUN_ONLY_FIELDS",
  "SECTIONS",
  "SHORTCUTS",
  "apply_shortcuts",
  "check_path",
  "coerce",
  "experiment_config",
  "field_type",
  "optional",
  "parse_arg",
  "paper_settings",
  "quick_settings",
  "resolve",
  "training_fields",
]
