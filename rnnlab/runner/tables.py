r"""The sweep's tables: one schema, its writer and its reader.

A sweep writes four plain CSV files into its workdir (comma-separated, a header
row, ``\n`` line ends; ``pandas.read_csv`` reads each as is):

``summary.csv``, one row per member::

  member, group, <axis columns>, seed, cell, T, final_loss, final_metric, initial_loss,
  baseline, solved, steps_to_solve, diverged_at, clip_fraction, decay_rate_init,
  decay_rate, memory_horizon_init, memory_horizon_init_censored, memory_horizon,
  memory_horizon_censored, spectral_radius_init, spectral_radius, lyapunov_init, lyapunov

  The axis columns are the swept fields, one per dotted config path
  (``model.cell``, ``task.length``, ``optimizer.learning_rate``, ``clip``...) in the
  order of ``config.sweep.axes``; ``cell`` (the member's cell name or import path)
  and ``T`` (its ``task.length``) are always present, swept or not.

``metrics.csv``, one row per member and recorded step (join on ``member`` for the axes)::

  member, step, <rnnlab.train.STEP_METRICS>[, floss, lyapunov_max]

  The last two (:data:`METRICS_OPTIONAL`, floats) only when the sweep flosses
  (``floss.weight`` nonzero or swept; :mod:`rnnlab.flossing`): empty on the
  updates that do not floss. Other sweeps' tables are unchanged.

``gradients.csv``, ``ln ||dL/dh_t||`` at lag ``T - 1 - t``, at initialisation and trained::

  member, phase, lag, log_grad_norm          (phase: "init" | "trained")

``gain_scan.csv``, the untrained scan over the recurrent gain (only when it ran)::

  cell, T, gain, seed, decay_rate, memory_horizon, spectral_radius, sigma_max,
  pascanu_bound, lyapunov

Types. Every fixed column has one kind (:data:`SCHEMA`): ``int``, ``float``,
``bool`` or ``str``. An axis column's kind comes from its values (Python or NumPy
``bool``, ``int``, ``float``, ``str``; anything else is written as its ``str``).
A missing value (``None``, or a NaN) is written as an empty field: a diagnostic a
cell without :class:`rnnlab.cells.CellParts` cannot measure, a run that diverged.

How values are written: ``int`` as decimal digits; ``float`` so that it reads back
equal and still reads as a float (``1.0``, ``0.001``, ``1e-05``, ``inf``; a
``float32`` with 9 significant digits, a ``float64`` with ``repr``); ``bool`` as
``True`` / ``False``; ``str`` as is (quoted by the ``csv`` module where needed).

How columns are read (:func:`read_table`): each column becomes a 1-D NumPy array,
``int64``, ``float64``, ``bool`` or ``str``; a fixed column takes its schema kind,
an axis column (any column the schema does not name) the narrowest kind all its
non-empty values parse as (bool, then int, then float, else str). An empty field
reads as ``nan`` in a float column; an int or bool column with an empty field reads
as ``float64`` with ``nan`` there (``True`` as 1.0), as ``pandas`` does; in a str
column it reads as ``""``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from rnnlab import train as train_lib
from rnnlab import workdir as workdir_lib

Table = dict[str, np.ndarray]

SUMMARY = "summary.csv"
METRICS = "metrics.csv"
GRADIENTS = "gradients.csv"
GAIN_SCAN = "gain_scan.csv"
TABLES = (SUMMARY, METRICS, GRADIENTS, GAIN_SCAN)
KINDS = ("int", "float", "bool", "str")

# summary.csv: the two leading columns, then the axes, then these.
SUMMARY_LEAD = (("member", "int"), ("group", "str"))
SUMMARY_FIXED = (
  ("seed", "int"),
  ("cell", "str"),
  ("T", "int"),
  ("final_loss", "float"),
  ("final_metric", "float"),
  ("initial_loss", "float"),
  ("baseline", "float"),
  ("solved", "bool"),
  ("steps_to_solve", "int"),
  ("diverged_at", "int"),
  ("clip_fraction", "float"),
  ("decay_rate_init", "float"),
  ("decay_rate", "float"),
  ("memory_horizon_init", "int"),
  ("memory_horizon_init_censored", "bool"),
  ("memory_horizon", "int"),
  ("memory_horizon_censored", "bool"),
  ("spectral_radius_init", "float"),
  ("spectral_radius", "float"),
  ("lyapunov_init", "float"),
  ("lyapunov", "float"),
)
# The kind of each per-step record of rnnlab.train (STEP_METRICS names them, in order).
STEP_METRIC_KINDS = {
  "loss": "float",
  "metric": "float",
  "grad_norm": "float",
  "clipped": "bool",
  "nonfinite": "bool",
  "diverged": "bool",
  "learning_rate": "float",
}
METRICS_FIXED = (
  ("member", "int"),
  ("step", "int"),
  *((name, STEP_METRIC_KINDS.get(name, "float")) for name in train_lib.STEP_METRICS),
)
# metrics.csv's columns written only when a sweep records them (gradient flossing on).
METRICS_OPTIONAL = tuple(train_lib.FLOSS_METRICS)
GRADIENTS_FIXED = (
  ("member", "int"),
  ("phase", "str"),
  ("lag", "int"),
  ("log_grad_norm", "float"),
)
GAIN_SCAN_FIXED = (
  ("cell", "str"),
  ("T", "int"),
  ("gain", "float"),
  ("seed", "int"),
  ("decay_rate", "float"),
  ("memory_horizon", "int"),
  ("spectral_radius", "float"),
  ("sigma_max", "float"),
  ("pascanu_bound", "float"),
  ("lyapunov", "float"),
)
# Each table's fixed columns and their kinds, in the order they are written.
SCHEMA: dict[str, dict[str, str]] = {
  SUMMARY: dict(SUMMARY_LEAD + SUMMARY_FIXED),
  METRICS: dict(METRICS_FIXED),
  GRADIENTS: dict(GRADIENTS_FIXED),
  GAIN_SCAN: dict(GAIN_SCAN_FIXED),
}
PHASES = ("init", "trained")

_INT_RE = re.compile(r"\s*[+-]?\d+\s*\Z")
_FLOAT_MARK = re.compile(r"[.eEnN]")  # what tells a written float from an int (".", "e", nan, inf)
_TRUE, _FALSE = {"True", "true", "TRUE"}, {"False", "false", "FALSE"}
_MISSING = {"", "nan", "NaN", "NAN"}


# --------------------------------------------------------------------------
# Columns.
# --------------------------------------------------------------------------


def _check_table(table: str) -> None:
  if table not in SCHEMA:
    raise ValueError(f"tables: table={table!r} is unknown; expected one of {list(TABLES)}")


def columns(table: str, axes: Sequence[str] = (), optional: Sequence[str] = ()) -> tuple[str, ...]:
  """The header of ``table`` (one of :data:`TABLES`); ``axes`` only for ``summary.csv``,
  ``optional`` (of :data:`METRICS_OPTIONAL`, appended) only for ``metrics.csv``.

  Raises:
    ValueError: an unknown table; axes for a table other than ``summary.csv``; an
      axis that is empty, repeated or named like a fixed column; an optional column
      that is not one of ``metrics.csv``'s.
  """
  _check_table(table)
  axes, optional = tuple(axes), tuple(optional)
  allowed = METRICS_OPTIONAL if table == METRICS else ()
  if any(c not in allowed for c in optional) or len(set(optional)) != len(optional):
    raise ValueError(
      f"tables: optional columns {list(optional)} are invalid for {table}; "
      f"expected distinct names among {list(allowed)}"
    )
  if table != SUMMARY:
    if axes:
      raise ValueError(f"tables: {table} has no axis columns; got axes={list(axes)}")
    return (*SCHEMA[table], *optional)
  for axis in axes:
    if not isinstance(axis, str) or not axis:
      raise ValueError(f"tables: axis {axis!r} is invalid; expected a dotted config path")
    if axis in SCHEMA[SUMMARY]:
      raise ValueError(
        f"tables: axis {axis!r} is named like a fixed column of {SUMMARY}; "
        f"expected a name other than {list(SCHEMA[SUMMARY])}"
      )
  if len(set(axes)) != len(axes):
    raise ValueError(f"tables: axes {list(axes)} repeat a name; expected each path once")
  lead, fixed = [c for c, _ in SUMMARY_LEAD], [c for c, _ in SUMMARY_FIXED]
  return (*lead, *axes, *fixed)


def summary_columns(axes: Sequence[str]) -> tuple[str, ...]:
  """``summary.csv``'s header for a sweep over ``axes`` (dotted paths, in the config's order)."""
  return columns(SUMMARY, axes)


def axes_of(header: Iterable[str]) -> tuple[str, ...]:
  """The axis columns of a ``summary.csv`` header (or table): those between ``group`` and ``seed``.

  Raises:
    ValueError: a header without ``group`` before ``seed``.
  """
  header = list(header)
  if "group" not in header or "seed" not in header or header.index("group") > header.index("seed"):
    raise ValueError(f"tables: {header[:6]}... is not a {SUMMARY} header (group ... seed)")
  return tuple(header[header.index("group") + 1 : header.index("seed")])


def kind_of(table: str, column: str) -> str | None:
  """The schema kind of ``column`` in ``table``; ``None`` for an axis column (kind from values)."""
  _check_table(table)
  return SCHEMA[table].get(column)


# --------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------


def _missing(value: Any) -> bool:
  if value is None:
    return True
  if isinstance(value, float | np.floating):
    return math.isnan(float(value))
  return False


def _float_text(value: Any) -> str:
  if isinstance(value, np.floating) and np.dtype(value.dtype).itemsize <= 4:
    text = format(float(value), ".9g")  # float32 and float16 round-trip with 9 digits
  else:
    text = repr(float(value))
  if text in ("inf", "-inf"):
    return text
  return text if _FLOAT_MARK.search(text) else text + ".0"


def _bad(table: str, column: str, value: Any, expected: str) -> ValueError:
  return ValueError(
    f"tables: {table} column {column!r} value {value!r} is invalid; expected {expected}"
  )


def format_value(table: str, column: str, value: Any) -> str:
  """One field as written: by the column's schema kind, or by the value's type for an axis.

  Raises:
    ValueError: a value that is not of the column's kind (an int column takes
      integers and integral floats, a bool column bools and 0/1).
  """
  if _missing(value):
    return ""
  kind = kind_of(table, column)
  if kind is None:  # an axis column: the value says
    if isinstance(value, bool | np.bool_):
      return str(bool(value))
    if isinstance(value, int | np.integer):
      return str(int(value))
    if isinstance(value, float | np.floating):
      return _float_text(value)
    return str(value)
  if kind == "str":
    return str(value)
  if kind == "bool":
    if isinstance(value, bool | np.bool_) or (
      isinstance(value, int | np.integer | float | np.floating) and value in (0, 1)
    ):
      return str(bool(value))
    raise _bad(table, column, value, "a bool (or 0/1), or None")
  if isinstance(value, str) or not isinstance(value, int | np.integer | float | np.floating):
    raise _bad(table, column, value, f"a number of kind {kind}, or None")
  if kind == "float":
    return _float_text(value)
  if isinstance(value, bool | np.bool_):
    raise _bad(table, column, value, "an int, or None")
  if isinstance(value, float | np.floating) and not float(value).is_integer():
    raise _bad(table, column, value, "an int (or an integral float), or None")
  return str(int(value))


def format_table(
  table: str,
  rows: Iterable[Mapping[str, Any] | Sequence[Any]],
  axes: Sequence[str] = (),
  optional: Sequence[str] = (),
) -> str:
  """The CSV text of ``table``: its header (:func:`columns`), then one line per row.

  Args:
    table: one of :data:`TABLES`.
    rows: each a mapping from every column name to its value, or a sequence of
      the values in header order. ``None`` or NaN write an empty field.
    axes: ``summary.csv`` only: the swept paths, in the config's order.
    optional: ``metrics.csv`` only: the :data:`METRICS_OPTIONAL` columns written.

  Raises:
    ValueError: a row that lacks a column, has other columns or another length, or
      a value not of its column's kind (:func:`format_value`).
  """
  header = columns(table, axes, optional)
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(header)
  for i, row in enumerate(rows):
    if isinstance(row, Mapping):
      missing = [c for c in header if c not in row]
      extra = [c for c in row if c not in header]
      if missing or extra:
        raise ValueError(
          f"tables: {table} row {i} lacks columns {missing} and has unknown columns {extra}; "
          f"expected exactly {list(header)}"
        )
      values = [row[c] for c in header]
    else:
      values = list(row)
      if len(values) != len(header):
        raise ValueError(
          f"tables: {table} row {i} has {len(values)} values; expected {len(header)}: {list(header)}"
        )
    writer.writerow([format_value(table, c, v) for c, v in zip(header, values, strict=True)])
  return buffer.getvalue()


def write_table(
  workdir: str | os.PathLike,
  table: str,
  rows: Iterable[Mapping[str, Any] | Sequence[Any]],
  axes: Sequence[str] = (),
  optional: Sequence[str] = (),
) -> str:
  """Writes ``workdir/<table>`` atomically (a temporary file, fsync, a rename); returns its path.

  The arguments as :func:`format_table`'s; the file is whole or untouched.
  """
  path = os.path.join(os.fspath(workdir), table)
  workdir_lib.write_text_atomic(path, format_table(table, rows, axes, optional))
  return path


# --------------------------------------------------------------------------
# Reading.
# --------------------------------------------------------------------------


def _parse(values: list[str], kind: str) -> np.ndarray | None:
  """``values`` as a column of ``kind``; ``None`` if some non-empty value is not of it."""
  if kind == "str":
    return np.array(values, dtype=np.str_) if values else np.zeros(0, np.str_)
  stripped = [v.strip() for v in values]
  present = [v for v in stripped if v not in _MISSING]
  gaps = len(present) < len(stripped)
  if kind == "bool":
    if not all(v in _TRUE or v in _FALSE for v in present):
      return None
    if not gaps:
      return np.array([v in _TRUE for v in stripped], dtype=np.bool_)
    return np.array(
      [math.nan if v in _MISSING else float(v in _TRUE) for v in stripped], np.float64
    )
  if kind == "int":
    if not all(_INT_RE.match(v) for v in present):
      return None
    try:
      if not gaps:
        return np.array([int(v) for v in stripped], dtype=np.int64)
      return np.array([math.nan if v in _MISSING else int(v) for v in stripped], np.float64)
    except OverflowError:
      return None
  try:
    return np.array([math.nan if v in _MISSING else float(v) for v in stripped], np.float64)
  except ValueError:
    return None


def _column(name: str, values: list[str], kind: str | None, path: str) -> np.ndarray:
  if kind is not None:
    if not values:
      return np.zeros(0, {"int": np.int64, "bool": np.bool_, "str": np.str_}.get(kind, np.float64))
    parsed = _parse(values, kind)
    if parsed is None:
      bad = next(v for v in values if _parse([v], kind) is None)
      raise ValueError(f"tables: {path}: column {name!r} holds {bad!r}; expected a {kind} or empty")
    return parsed
  if not values or all(v.strip() in _MISSING for v in values):
    return np.full(len(values), math.nan)
  for guess in ("bool", "int", "float"):
    parsed = _parse(values, guess)
    if parsed is not None:
      return parsed
  return np.array(values, dtype=np.str_)


def read_table(path: str | os.PathLike, table: str | None = None) -> Table:
  """Reads one of the sweep's tables into typed columns (module docstring: "How columns are read").

  Args:
    path: the CSV file.
    table: which schema applies (one of :data:`TABLES`); default: the file's name
      if it is one of them, else none (every column's kind from its values).

  Returns:
    ``{column: 1-D array}`` in header order; a header-only file gives empty arrays
    (of the schema's kind), a zero-byte file an empty dict.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: a row whose number of fields differs from the header's, a repeated
      column name, or a fixed column holding a value not of its kind.
  """
  path = os.fspath(path)
  if table is None:
    table = os.path.basename(path) if os.path.basename(path) in SCHEMA else None
  elif table not in SCHEMA:
    _check_table(table)
  kinds = SCHEMA[table] if table is not None else {}
  if not os.path.isfile(path):
    raise FileNotFoundError(f"tables: no such file: {path}")
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if not rows:
    return {}
  header = [name.strip() for name in rows[0]]
  if len(set(header)) != len(header):
    raise ValueError(f"tables: {path}: repeated column names in the header {header}")
  body = []
  for line, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != len(header):
      raise ValueError(
        f"tables: {path}: line {line} has {len(row)} fields, the header {len(header)}"
      )
    body.append(row)
  values = list(zip(*body, strict=True)) if body else [()] * len(header)
  return {
    name: _column(name, list(column), kinds.get(name), path)
    for name, column in zip(header, values, strict=True)
  }


def read_tables(workdir: str | os.PathLike) -> dict[str, Table]:
  """Every table of :data:`TABLES` present in ``workdir``, by file name (absent ones left out)."""
  workdir = os.fspath(workdir)
  return {
    name: read_table(os.path.join(workdir, name))
    for name in TABLES
    if os.path.isfile(os.path.join(workdir, name))
  }


def num_rows(table: Mapping[str, np.ndarray]) -> int:
  """The number of rows of a table read by :func:`read_table` (0 for an empty dict)."""
  return int(next(iter(table.values())).shape[0]) if table else 0


__all__ = [
  "GAIN_SCAN",
  "GAIN_SCAN_FIXED",
  "GRADIENTS",
  "GRADIENTS_FIXED",
  "KINDS",
  "METRICS",
  "METRICS_FIXED",
  "PHASES",
  "SCHEMA",
  "STEP_METRIC_KINDS",
  "SUMMARY",
  "SUMMARY_FIXED",
  "SUMMARY_LEAD",
  "TABLES",
  "axes_of",
  "columns",
  "format_table",
  "format_value",
  "kind_of",
  "num_rows",
  "read_table",
  "read_tables",
  "summary_columns",
  "write_table",
]
