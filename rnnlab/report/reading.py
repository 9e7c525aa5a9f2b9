r"""A workdir's tables and config read as an experiment: its axes, its members, their tables.

:func:`read_experiment` reads ``summary.csv``, ``metrics.csv``, ``gradients.csv``,
``gain_scan.csv`` (through :mod:`rnnlab.runner.tables`, the one schema) and
``config.json`` into an :class:`Experiment`:

* its *axes* (:class:`Axis`): the swept config paths, the axis columns of
  ``summary.csv`` in the config's order, each with its distinct values and, per
  member, the index of its value;
* the two axes the figures are built on: ``x``, the axis the success rate is
  drawn against (``config.report.success_x``; default ``task.length`` when it
  varies, else the first numeric axis), and ``group``, the axis that gives each
  line its colour (``config.report.group_by``; default ``model.cell`` when it
  varies, else another axis);
* the rows of ``metrics.csv`` and ``gradients.csv`` joined to their members
  (``member`` -> the summary row), and which members diverged and when.

An axis with one value is a fixed setting, not drawn against. Selections are by
value (:meth:`Experiment.choose`, :meth:`Experiment.select`), so a section fixes
the axes it does not draw to the config's own value (or a clipping-on value, or
the largest T) and names them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rnnlab.report import style
from rnnlab.runner import tables as tables_lib

Table = dict[str, np.ndarray]

# Short names of well-known paths, as the texts and tables print them ("T = 10", "clip = 1").
LABELS = {
  "model.cell": "cell",
  "task.length": "T",
  "task.name": "task",
  "model.gain": "gain",
  "optimizer.learning_rate": "lr",
  "optimizer.name": "optimizer",
  "clip": "clip",
  "model.recurrent_init": "init",
  "model.chrono_t_max": "chrono T_max",
  "model.nonlinearity": "nonlinearity",
}
# An axis's x-axis title on a figure (other paths: the path itself).
TITLES = {
  "task.length": "dependency length T (steps)",
  "model.gain": "recurrent gain g (model.gain)",
  "optimizer.learning_rate": "learning rate (optimizer.learning_rate)",
  "clip": "clipping threshold (clip)",
  "model.hidden_size": "hidden size H (model.hidden_size)",
}
CELL = "model.cell"
LENGTH = "task.length"
CLIP = "clip"


def setting(config: Mapping[str, Any] | None, path: str, default: Any = None) -> Any:
  """The value at a dotted ``path`` of a (JSON) config, or ``default`` where it has none."""
  node: Any = config
  for key in path.split("."):
    if not isinstance(node, Mapping) or key not in node:
      return default
    node = node[key]
  return node


def _python(value: Any) -> Any:
  """A column entry as a plain Python value; NaN (an empty field) as None."""
  if isinstance(value, np.bool_ | bool):
    return bool(value)
  if isinstance(value, np.integer | int):
    return int(value)
  if isinstance(value, np.floating | float):
    return None if math.isnan(float(value)) else float(value)
  return str(value)


@dataclasses.dataclass(frozen=True, eq=False)
class Axis:
  """One swept config path: its distinct values, and per summary row the index of its value.

  Attributes:
    path: the dotted config path (``"model.hidden_size"``), the column's name.
    values: the distinct values in order: numbers ascending (``None``, an empty
      field, first), others in the config's order (``sweep.axes``), built-in
      cells as elman, lstm, gru, then as they first appear.
    codes: ``(members,)`` int: ``values[codes[i]]`` is member row ``i``'s value.
    numeric: whether the values are numbers (int or float columns).
    parts: for a combined axis (:func:`combine_axes`, ``group_by="a+b"``), the
      axes it combines; its values are tuples of theirs. Empty otherwise.
  """

  path: str
  values: tuple[Any, ...]
  codes: np.ndarray
  numeric: bool
  parts: tuple[Axis, ...] = ()

  @property
  def label(self) -> str:
    """The short name texts use: ``T``, ``cell``, ``clip``, ``lr``, else the path."""
    if self.parts:
      return " + ".join(a.label for a in self.parts)
    return LABELS.get(self.path, self.path)

  @property
  def title(self) -> str:
    """The x-axis title of a figure drawn against this axis."""
    return self.label if self.parts else TITLES.get(self.path, self.path)

  def text(self, value: Any) -> str:
    """A value as tables print it: ``LSTM``, ``0.002``, ``off`` (clip 0 or None).

    A combined axis's value: its first part's text, then the others by name where
    set (``orthogonal, chrono T_max = 100``; a ``None`` part is left out).
    """
    if self.parts:
      first, *rest = zip(self.parts, value, strict=True)
      texts = [first[0].text(first[1])]
      texts += [a.name(v) for a, v in rest if v is not None]
      return ", ".join(texts)
    if self.path == CLIP and (value is None or value == 0):
      return "off"
    if value is None:
      return "None"
    if self.path == CELL:
      short = [style.cell_name(str(v)) for v in self.values]
      unique = len(set(short)) == len(short)  # two factories of one name: their paths
      return style.cell_name(str(value)) if unique else style.CELL_NAMES.get(value, str(value))
    if isinstance(value, bool):
      return str(value)
    if isinstance(value, float):
      return style.g(value)
    return str(value)

  def name(self, value: Any) -> str:
    """A value as a sentence names it: ``LSTM`` for a cell, else ``lr = 0.002``."""
    if self.path == CELL or self.parts:
      return self.text(value)
    return f"{self.label} = {self.text(value)}"

  def code(self, value: Any) -> int:
    return self.values.index(value)

  def scale(self) -> style.Scale:
    return style.Scale(self.values, [self.text(v) for v in self.values], self.numeric, self.title)

  def colors(self) -> dict[Any, str]:
    return style.colors(self.values, cells=self.path == CELL)


def make_axis(path: str, column: np.ndarray, config: Mapping[str, Any] | None = None) -> Axis:
  """The :class:`Axis` of one axis column of ``summary.csv`` (as :mod:`rnnlab.runner.tables` reads it)."""
  column = np.asarray(column)
  numeric = column.dtype.kind in "iuf"
  row_values = [_python(v) for v in column.tolist()]
  present = list(dict.fromkeys(row_values))
  if numeric:
    values = sorted(present, key=lambda v: (v is not None, -math.inf if v is None else v))
  elif column.dtype.kind == "b":
    values = sorted(present)
  else:
    declared = setting(config, "sweep.axes")
    declared = declared.get(path) if isinstance(declared, Mapping) else None
    order = [str(v) for v in declared] if isinstance(declared, list | tuple) else []
    if path == CELL:
      order += list(style.CELL_ORDER)
    rank = {v: i for i, v in enumerate(dict.fromkeys(order))}
    values = sorted(present, key=lambda v: (rank.get(v, len(rank)), present.index(v)))
  index = {v: i for i, v in enumerate(values)}
  codes = np.array([index[v] for v in row_values], dtype=np.int64)
  return Axis(path, tuple(values), codes, numeric)


def combine_axes(parts: Sequence[Axis]) -> Axis:
  """One axis over the combinations of ``parts``' values that the rows take.

  Its path joins theirs with ``+``; its values are tuples, ordered by the
  parts' own orders (the first part first); ``config.report.group_by =
  "model.recurrent_init+model.chrono_t_max"`` gives one line per scheme, chrono
  apart from plain orthogonal.
  """
  keys = [tuple(row) for row in np.stack([a.codes for a in parts], axis=1).tolist()]
  combos = sorted(set(keys))
  index = {c: i for i, c in enumerate(combos)}
  values = tuple(tuple(a.values[c] for a, c in zip(parts, combo, strict=True)) for combo in combos)
  codes = np.array([index[k] for k in keys], dtype=np.int64)
  return Axis("+".join(a.path for a in parts), values, codes, False, tuple(parts))


def choose_axes(
  axes: Sequence[Axis], success_x: Any = None, group_by: Any = None
) -> tuple[Axis | None, Axis | None, list[str]]:
  """The figures' x axis and grouping axis among the ``axes`` that vary, and notes on choices.

  ``x``: ``success_x`` if it names a varying axis, else ``task.length`` when it
  varies, else the first numeric varying axis, else the first varying axis that
  is not ``model.cell``, else any. ``group``: ``group_by`` if it names a varying
  axis other than ``x`` (paths joined by ``+``: their combinations, :func:`combine_axes`,
  over the parts that vary), else ``model.cell`` when it varies, else the first other
  varying axis with string values, else the first other one; ``None`` when only
  ``x`` varies. A ``success_x`` or ``group_by`` that names no varying axis is
  noted (and the default used).
  """
  varying = [a for a in axes if len(a.values) > 1]
  by = {a.path: a for a in varying}
  notes = []
  if isinstance(group_by, str) and "+" in group_by:
    named = {a.path: a for a in axes}
    parts = group_by.split("+")
    if all(p in named for p in parts):
      moving = [by[p] for p in parts if p in by]
      if len(moving) > 1:
        by[group_by] = combine_axes(moving)
      elif moving:
        group_by = moving[0].path
  for field, value in (("success_x", success_x), ("group_by", group_by)):
    if value not in (None, "") and (not isinstance(value, str) or value not in by):
      notes.append(
        f"`config.report.{field}` = {value!r} is not an axis that takes two or more values "
        f"here ({style.join([f'`{p}`' for p in by]) or 'none'}); the default is used."
      )
  x = by.get(success_x) if isinstance(success_x, str) else None
  group = by.get(group_by) if isinstance(group_by, str) else None
  if x is not None and group is x:
    notes.append(f"`config.report.group_by` = {group_by!r} is the x axis too; the default is used.")
    group = None

  def first(candidates: list[Axis], *tests) -> Axis | None:
    for test in tests:
      found = next((a for a in candidates if test(a)), None)
      if found is not None:
        return found
    return None

  if x is None:
    others = [a for a in varying if a is not group]
    x = first(others, lambda a: a.path == LENGTH, lambda a: a.numeric, lambda a: a.path != CELL)
    x = x or (others[0] if others else None)
  if x is None and group is not None:  # the grouping axis is the only one: draw against it
    x, group = group, None
  if group is None:
    rest = [a for a in varying if a is not x]
    group = first(rest, lambda a: a.path == CELL, lambda a: not a.numeric, lambda a: True)
  return x, group, notes


def _rows(summary: Mapping[str, np.ndarray], table: Mapping[str, np.ndarray]) -> np.ndarray:
  """Per row of ``table``: the summary row of its ``member`` (-1 where none)."""
  n = tables_lib.num_rows(table)
  if "member" not in summary or "member" not in table or not n:
    return np.full(n, -1, np.int64)
  members = np.asarray(summary["member"])
  order = np.argsort(members, kind="stable")
  ordered = members[order]
  wanted = np.asarray(table["member"])
  pos = np.clip(np.searchsorted(ordered, wanted), 0, max(ordered.size - 1, 0))
  if not ordered.size:
    return np.full(n, -1, np.int64)
  return np.where(ordered[pos] == wanted, order[pos], -1).astype(np.int64)


def divergence_steps(
  summary: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray]
) -> dict[int, int]:
  """``{member: step}`` of the diverged runs: ``diverged_at``, else the first ``diverged`` step.

  (Runs that only went non-finite, without either record, are not listed.)
  """
  out: dict[int, int] = {}
  if all(c in metrics for c in ("member", "step", "diverged")) and tables_lib.num_rows(metrics):
    bad = np.asarray(metrics["diverged"] == 1)
    for member, step in zip(
      metrics["member"][bad].tolist(), metrics["step"][bad].tolist(), strict=True
    ):
      out[member] = min(step, out.get(member, step))
  if "member" in summary and "diverged_at" in summary:
    steps = np.asarray(summary["diverged_at"], np.float64)
    for member, step in zip(summary["member"].tolist(), steps.tolist(), strict=True):
      if step >= 0:
        out[member] = int(step)
  return out


def diverged_mask(
  summary: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray], steps: Mapping[int, int]
) -> np.ndarray:
  """Per summary row: a divergence step, an infinite final loss or a non-finite last loss."""
  n = tables_lib.num_rows(summary)
  out = np.zeros(n, bool)
  if "member" in summary:
    out |= np.isin(summary["member"], list(steps))
  if "final_loss" in summary:  # an empty one (NaN: no held-out evaluation) says nothing
    out |= np.isinf(np.asarray(summary["final_loss"], np.float64))
  has = all(c in metrics for c in ("member", "step", "loss")) and "member" in summary
  if has and tables_lib.num_rows(metrics):
    order = np.lexsort((metrics["step"], metrics["member"]))
    member = metrics["member"][order]
    last_loss = np.asarray(metrics["loss"], np.float64)[order]
    last = np.r_[member[1:] != member[:-1], True]
    bad = member[last][~np.isfinite(last_loss[last])]
    out |= np.isin(summary["member"], bad)
  return out


@dataclasses.dataclass(eq=False)
class Experiment:
  """A sweep's tables and config, with its axes and the tables joined to its members.

  Attributes:
    summary, metrics, gradients, gain_scan: the tables (``{column: array}``;
      an absent table is ``{}``).
    config: ``config.json`` (``{}`` without one).
    status: per table file name: ``"ok"``, ``"missing"`` or ``"empty"`` (no rows).
    axes: every axis column of ``summary.csv``, in order.
    x, group: the figures' axes (module docstring); ``None`` where none varies.
    notes: sentences on choices the report made (an override it could not follow).
    metric_rows, gradient_rows: per row of ``metrics`` / ``gradients``, the
      summary row of its member (-1 where none).
    divergence: ``{member: step}`` of the runs that diverged at a known step.
    diverged: per summary row, whether the run diverged (also non-finite at the end).
  """

  summary: Table
  metrics: Table
  gradients: Table
  gain_scan: Table
  config: dict[str, Any]
  status: dict[str, str]
  axes: tuple[Axis, ...]
  x: Axis | None
  group: Axis | None
  notes: tuple[str, ...]
  metric_rows: np.ndarray
  gradient_rows: np.ndarray
  divergence: dict[int, int]
  diverged: np.ndarray

  @property
  def n(self) -> int:
    """The number of members (summary rows)."""
    return tables_lib.num_rows(self.summary)

  @property
  def varying(self) -> tuple[Axis, ...]:
    """The axes with two or more values."""
    return tuple(a for a in self.axes if len(a.values) > 1)

  def axis(self, path: str) -> Axis | None:
    return next((a for a in self.axes if a.path == path), None)

  def setting(self, path: str, default: Any = None) -> Any:
    """The config's value at a dotted path (``config.json``)."""
    return setting(self.config, path, default)

  @property
  def task(self) -> str:
    """The task's name (several joined by ``/`` when ``task.name`` is an axis)."""
    axis = self.axis("task.name")
    if axis is not None:
      return "/".join(str(v) for v in axis.values)
    name = self.setting("task.name")
    return str(name) if name else "sweep"

  def column(self, name: str) -> np.ndarray:
    """A summary column as float64 (NaN where absent)."""
    if name in self.summary:
      return np.asarray(self.summary[name], np.float64)
    return np.full(self.n, np.nan)

  def clip_on(self, axis: Axis | None = None) -> Any:
    """The clipping-on value shown where the clip axis is fixed: the config's, else the smallest."""
    axis = axis or self.axis(CLIP)
    if axis is None:
      return None
    on = [
      v for v in axis.values if isinstance(v, int | float) and not isinstance(v, bool) and v > 0
    ]
    if not on:
      return None
    preferred = self.setting(CLIP)
    return preferred if preferred in on else on[0]

  def determined(self, axis: Axis, by: Sequence[Axis], mask: np.ndarray | None = None) -> bool:
    """Whether ``axis``'s value is a function of the ``by`` axes' values on the rows in ``mask``.

    In a ``zip`` sweep an axis paired with a drawn one (the learning rate of each
    optimizer) is determined by it: fixing it would drop the other pairs.
    """
    rows = np.flatnonzero(np.ones(self.n, bool) if mask is None else mask)
    seen: dict[tuple, int] = {}
    for i in rows.tolist():
      key = tuple(int(a.codes[i]) for a in by)
      if seen.setdefault(key, int(axis.codes[i])) != int(axis.codes[i]):
        return False
    return True

  def choose(self, exclude: Sequence[Axis | None] = (), clip: bool = True) -> dict[str, Any]:
    """One value for each varying axis not in ``exclude``: the one the figures show.

    An axis whose value the ``exclude``d (drawn) axes determine on the rows left
    (an axis paired with a drawn one in a ``zip`` sweep) is not fixed. Otherwise
    ``task.length``: the largest; ``clip`` (with ``clip``): a clipping-on value
    (:meth:`clip_on`); any other axis: the config's own value if it is among the
    axis's values, else the first value; each among the values the rows fixed so
    far still take, and another one where that keeps more combinations of the
    drawn axes' values (more of the figure's lines).
    """
    drawn = [a for a in exclude if a is not None]
    skip = {a.path for a in drawn}
    fixed: dict[str, Any] = {}
    mask = np.ones(self.n, bool)
    for axis in self.varying:
      if axis.path in skip:
        continue
      if drawn and self.determined(axis, drawn, mask):
        continue
      present = [v for v in axis.values if np.any(mask & (axis.codes == axis.code(v)))]
      if axis.path == LENGTH and axis.numeric:
        preferred = present[-1]
      elif axis.path == CLIP and clip and self.clip_on(axis) in present:
        preferred = self.clip_on(axis)
      else:
        own = self.setting(axis.path)
        preferred = own if own in present else present[0]

      def shown(
        v, axis=axis, mask=mask
      ):  # the combinations of the drawn axes' values a choice keeps
        rows = np.flatnonzero(mask & (axis.codes == axis.code(v)))
        return len({tuple(int(a.codes[i]) for a in drawn) for i in rows.tolist()})

      # The preferred value unless another keeps more of the drawn lines (in a zip sweep,
      # clipping on may hold one optimizer's runs only).
      most = max(shown(v) for v in present)
      value = next(v for v in [preferred, *present] if shown(v) == most)
      fixed[axis.path] = value
      mask &= axis.codes == axis.code(value)
    return fixed

  def select(self, fixed: Mapping[str, Any]) -> np.ndarray:
    """The summary rows whose axes take the ``fixed`` values."""
    mask = np.ones(self.n, bool)
    for path, value in fixed.items():
      axis = self.axis(path)
      if axis is not None:
        mask &= axis.codes == axis.code(value)
    return mask

  def fixed_note(self, fixed: Mapping[str, Any]) -> str:
    """``"clip = 1, gain = 1"``: the axis values a figure was restricted to, by label."""
    items = sorted((self.axis(p).label, self.axis(p).text(v)) for p, v in fixed.items())
    return ", ".join(f"{label} = {text}" for label, text in items)

  def baseline(self, mask: np.ndarray) -> float | None:
    """The median trivial-predictor baseline of the rows in ``mask`` (None without one)."""
    values = self.column("baseline")[mask]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None

  def where(self, mask: np.ndarray) -> Experiment:
    """The experiment restricted to the summary rows in ``mask`` (and their table rows)."""
    mask = np.asarray(mask, bool)
    summary = {k: v[mask] for k, v in self.summary.items()}
    metrics = {
      k: v[(self.metric_rows >= 0) & mask[self.metric_rows]] for k, v in self.metrics.items()
    }
    gradients = {
      k: v[(self.gradient_rows >= 0) & mask[self.gradient_rows]] for k, v in self.gradients.items()
    }
    return experiment(summary, metrics, gradients, self.gain_scan, self.config, self.status)


def experiment(
  summary: Table,
  metrics: Table | None = None,
  gradients: Table | None = None,
  gain_scan: Table | None = None,
  config: Mapping[str, Any] | None = None,
  status: Mapping[str, str] | None = None,
) -> Experiment:
  """An :class:`Experiment` from tables in memory (as :func:`rnnlab.runner.tables.read_table` gives)."""
  metrics, gradients, gain_scan = metrics or {}, gradients or {}, gain_scan or {}
  config = dict(config or {})
  given = {
    tables_lib.SUMMARY: summary,
    tables_lib.METRICS: metrics,
    tables_lib.GRADIENTS: gradients,
    tables_lib.GAIN_SCAN: gain_scan,
  }
  status = dict(status or {})
  for name, table in given.items():
    if status.get(name) != "missing":
      status[name] = "ok" if tables_lib.num_rows(table) else ("empty" if table else "missing")
  try:
    paths = tables_lib.axes_of(summary) if summary else ()
  except ValueError:
    paths = ()
  axes = tuple(make_axis(p, summary[p], config) for p in paths)
  x, group, notes = choose_axes(
    axes, setting(config, "report.success_x"), setting(config, "report.group_by")
  )
  steps = divergence_steps(summary, metrics)
  return Experiment(
    summary=summary,
    metrics=metrics,
    gradients=gradients,
    gain_scan=gain_scan,
    config=config,
    status=status,
    axes=axes,
    x=x,
    group=group,
    notes=tuple(notes),
    metric_rows=_rows(summary, metrics),
    gradient_rows=_rows(summary, gradients),
    divergence=steps,
    diverged=diverged_mask(summary, metrics, steps),
  )


def read_config(workdir: str) -> dict[str, Any]:
  """``workdir/config.json`` as a dict (``{}`` without one).

  Raises:
    ValueError: the file is not valid JSON.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    try:
      config = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"report: {path} is not valid JSON: {e}") from None
  return config if isinstance(config, dict) else {}


def read_experiment(workdir: str | os.PathLike) -> Experiment:
  """The :class:`Experiment` in ``workdir``: its tables (``summary.csv`` required) and config.

  Raises:
    FileNotFoundError: ``workdir/summary.csv`` is missing.
    ValueError: a malformed table or ``config.json``.
  """
  workdir = os.fspath(workdir)
  summary = tables_lib.read_table(os.path.join(workdir, tables_lib.SUMMARY))
  status = {}
  found = {}
  for name in (tables_lib.METRICS, tables_lib.GRADIENTS, tables_lib.GAIN_SCAN):
    path = os.path.join(workdir, name)
    if os.path.isfile(path):
      found[name] = tables_lib.read_table(path)
    else:
      found[name], status[name] = {}, "missing"
  return experiment(
    summary,
    found[tables_lib.METRICS],
    found[tables_lib.GRADIENTS],
    found[tables_lib.GAIN_SCAN],
    read_config(workdir),
    status,
  )


__all__ = [
  "Axis",
  "CELL",
  "CLIP",
  "Experiment",
  "LABELS",
  "LENGTH",
  "TITLES",
  "choose_axes",
  "combine_axes",
  "diverged_mask",
  "divergence_steps",
  "experiment",
  "make_axis",
  "read_config",
  "read_experiment",
  "setting",
]
