r"""Figures and a markdown report from a sweep's tables (the workdir of :mod:`rnnlab.sweep`).

Reads ``summary.csv``, ``metrics.csv``, ``gradients.csv``, ``gain_scan.csv`` and
``config.json`` and draws five figures, each a function of the tables' columns
that returns a :class:`matplotlib.figure.Figure` (or ``None`` when the data for it
is absent):

1. :func:`plot_grad_vs_lag`: ``||dL/dh_t||`` against the lag, at initialisation
   and after training, per cell (median over seeds, min-max band).
2. :func:`plot_decay_vs_gain`: the untrained gradient decay rate and the largest
   Lyapunov exponent against the recurrent gain, with the Pascanu threshold.
3. :func:`plot_training_curves`: training loss against step, one panel per T,
   with the task's trivial baseline.
4. :func:`plot_success_vs_T`: the share of runs solved against T, clipping on
   and off.
5. :func:`plot_clipping`: how often clipping fired and what it changed.

:func:`write_report` writes them as ``workdir/figures/<name>.<format>`` and a
``workdir/report.md`` whose readings are computed from the same data, with the
success rate and the memory horizons per cell and T (a censored horizon, one
equal to the largest lag measured, printed as ``>= L``).

This module aggregates the sweep (which runs, medians over seeds, divergence);
where a figure is a kind :mod:`rnnlab.plot` draws (gradient norm against lag,
training curves) its panels are drawn by that module, in its style and colours.
Only NumPy, matplotlib (no pyplot: figures render through Agg and the SVG
backend), :mod:`rnnlab.plot` and the standard library are used. Every number may be ``nan`` or
``inf``; all-``nan`` slices stay quiet. Gradient norms are plotted as
``log10`` on a linear axis labelled in powers of ten, so norms far below the
float range (``ln`` of -1000) keep their tail.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from rnnlab import plot as plot_lib

Table = dict[str, np.ndarray]

FIGURES = ("grad_vs_lag", "decay_vs_gain", "training_curves", "success_vs_T", "clipping")

# Okabe-Ito colours (colour-blind safe, from rnnlab.plot); a cell keeps its colour in every figure.
CELL_COLORS = plot_lib.CELL_COLORS
_EXTRA_COLORS = tuple(c for c in plot_lib.OKABE_ITO if c not in CELL_COLORS.values())
_CELL_ORDER = ("elman", "lstm", "gru")
_CELL_NAMES = plot_lib.CELL_NAMES

# Column types of the sweep's tables; other columns are inferred from their values.
_INT_COLUMNS = {
  "member",
  "T",
  "hidden",
  "seed",
  "steps_to_solve",
  "diverged_at",
  "memory_horizon_init",
  "memory_horizon",
  "step",
  "lag",
}
_BOOL_COLUMNS = {
  "solved",
  "clipped",
  "nonfinite",
  "diverged",
  "memory_horizon_init_censored",
  "memory_horizon_censored",
}
_STR_COLUMNS = {"group", "cell", "task", "phase"}
_FLOAT_COLUMNS = {
  "gain",
  "lr",
  "clip",
  "final_loss",
  "final_metric",
  "baseline",
  "clip_fraction",
  "decay_rate_init",
  "decay_rate",
  "spectral_radius_init",
  "spectral_radius",
  "lyapunov_init",
  "lyapunov",
  "loss",
  "metric",
  "grad_norm",
  "learning_rate",
  "log_grad_norm",
  "sigma_max",
  "pascanu_bound",
}
_INT_RE = re.compile(r"\s*[+-]?\d+\s*\Z")
_TRUE, _FALSE = {"True", "true", "TRUE"}, {"False", "false", "FALSE"}

_LN2, _LN10 = math.log(2.0), math.log(10.0)
_BEATS = 0.9  # "clearly below the baseline": a final loss under this fraction of it
_HUGE, _TINY = 1e6, 1e-6  # losses and loss ratios beyond these print as ">1e6" and "<1e-6"

_SAVE_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


# --------------------------------------------------------------------------
# Reading tables.
# --------------------------------------------------------------------------


def read_table(path: str | os.PathLike) -> Table:
  """Reads a sweep CSV (header row, comma-separated) into typed columns.

  Columns the sweep writes get their documented type (``T``, ``seed``, ``lag``...
  int64; ``loss``, ``gain``, ``clip``... float64, also when every value happens
  to print as an integer; ``solved``, ``clipped``, ``nonfinite``, ``diverged`` bool; ``cell``,
  ``phase``... str); other columns are inferred: ``True``/``False`` as bool,
  integers as int64, numbers (``nan``, ``inf`` and ``-inf`` included) as
  float64, anything else as str. An empty field in a float column reads ``nan``.

  Args:
    path: the CSV file.

  Returns:
    ``{column: 1-D array}`` in header order; a header-only table gives empty
    arrays, a zero-byte file an empty dict.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: a row whose number of fields differs from the header's, or a
      repeated column name.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"read_table: no such file: {path}")
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  if not rows:
    return {}
  header = [name.strip() for name in rows[0]]
  if len(set(header)) != len(header):
    raise ValueError(f"read_table: {path}: repeated column names in the header {header}")
  body = []
  for line, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != len(header):
      raise ValueError(
        f"read_table: {path}: line {line} has {len(row)} fields, the header {len(header)}"
      )
    body.append(row)
  columns = list(zip(*body, strict=True)) if body else [()] * len(header)
  return {
    name: _parse_column(name, list(values)) for name, values in zip(header, columns, strict=True)
  }


def _parse_column(name: str, values: list[str]) -> np.ndarray:
  known = (
    "int"
    if name in _INT_COLUMNS
    else "float"
    if name in _FLOAT_COLUMNS
    else "bool"
    if name in _BOOL_COLUMNS
    else "str"
    if name in _STR_COLUMNS
    else None
  )
  if not values:
    dtype = {"int": np.int64, "bool": np.bool_, "str": np.str_}.get(known or "", np.float64)
    return np.zeros(0, dtype)
  for kind in (known, "bool", "int", "float"):
    if kind is not None:
      parsed = _parse_as(values, kind)
      if parsed is not None:
        return parsed
  return np.array(values, dtype=np.str_)


def _parse_as(values: list[str], kind: str) -> np.ndarray | None:
  if kind == "str":
    return np.array(values, dtype=np.str_)
  if kind == "bool":
    stripped = [v.strip() for v in values]
    if all(v in _TRUE or v in _FALSE for v in stripped):
      return np.array([v in _TRUE for v in stripped], dtype=np.bool_)
    return None
  if kind == "int":
    if not all(_INT_RE.match(v) for v in values):
      return None
    try:
      return np.array([int(v) for v in values], dtype=np.int64)
    except OverflowError:
      return None
  try:
    return np.array([float(v) if v.strip() else math.nan for v in values], dtype=np.float64)
  except ValueError:
    return None


def _read_optional(workdir: str, name: str) -> tuple[Table, str]:
  """A table and its status: ``"ok"``, ``"missing"`` or ``"empty"`` (no rows)."""
  path = os.path.join(workdir, name)
  if not os.path.isfile(path):
    return {}, "missing"
  table = read_table(path)
  return table, ("ok" if _n(table) else "empty")


def _read_config(workdir: str) -> dict[str, Any]:
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    try:
      config = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"write_report: {path} is not valid JSON: {e}") from None
  return config if isinstance(config, dict) else {}


# --------------------------------------------------------------------------
# Small helpers: columns, selection, statistics, formatting.
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """No NumPy floating-point or all-NaN-slice warnings inside."""
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)
    yield


def _n(table: Mapping[str, np.ndarray]) -> int:
  return int(next(iter(table.values())).shape[0]) if table else 0


def _has(table: Mapping[str, np.ndarray], *columns: str) -> bool:
  return bool(table) and all(c in table for c in columns)


def _where(table: Mapping[str, np.ndarray], mask: np.ndarray) -> Table:
  return {k: v[mask] for k, v in table.items()}


def _f64(values: np.ndarray) -> np.ndarray:
  return np.asarray(values, dtype=np.float64)


def _close(values: np.ndarray, value: float) -> np.ndarray:
  return np.isclose(_f64(values), float(value), rtol=1e-6, atol=1e-12)


def _cfg(config: Mapping[str, Any] | None, *keys: str) -> Any:
  node: Any = config
  for key in keys:
    if not isinstance(node, Mapping) or key not in node:
      return None
    node = node[key]
  return node


def _cells(*columns: np.ndarray) -> list[str]:
  """The cells present, elman, lstm, gru first, then the others sorted."""
  present = set()
  for column in columns:
    present.update(str(c) for c in np.unique(column))
  return [c for c in _CELL_ORDER if c in present] + sorted(present - set(_CELL_ORDER))


def _color(cell: str) -> str:
  if cell in CELL_COLORS:
    return CELL_COLORS[cell]
  return _EXTRA_COLORS[sum(map(ord, cell)) % len(_EXTRA_COLORS)]


def _name(cell: str) -> str:
  return _CELL_NAMES.get(cell, cell)


def _ids(table: Mapping[str, np.ndarray]) -> np.ndarray:
  """Per-row run identity: ``member``, else ``seed``, else one run."""
  for column in ("member", "seed"):
    if column in table:
      return np.asarray(table[column])
  return np.zeros(_n(table), np.int64)


def _matrix(ids: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(unique xs, runs x xs matrix of ys)``, ``nan`` where a run lacks an x."""
  _, rows = np.unique(ids, return_inverse=True)
  ux, cols = np.unique(xs, return_inverse=True)
  out = np.full((int(rows.max()) + 1 if rows.size else 0, ux.size), np.nan)
  out[rows.ravel(), cols.ravel()] = _f64(ys)
  return ux, out


def _nanmedian(values: Any) -> float:
  values = _f64(values).ravel()
  values = values[~np.isnan(values)]
  return float(np.median(values)) if values.size else math.nan


def _median_inf(values: Any) -> float:
  """Median with every non-finite value counted as ``+inf`` (a diverged run is worst)."""
  values = _f64(values).ravel()
  if not values.size:
    return math.nan
  return float(np.median(np.where(np.isfinite(values), values, np.inf)))


def _crossing(x: np.ndarray, y: np.ndarray, level: float = 0.0) -> float | None:
  """The first ``x`` where ``y`` (sorted by ``x``) reaches ``level``, linearly interpolated."""
  order = np.argsort(x)
  x, y = _f64(x)[order], _f64(y)[order] - level
  keep = np.isfinite(x) & np.isfinite(y)
  x, y = x[keep], y[keep]
  for i in range(x.size):
    if y[i] == 0:
      return float(x[i])
    if i + 1 < x.size and y[i] * y[i + 1] < 0:
      return float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))
  return None


def _pick(values: np.ndarray, preferred: Any = None) -> float | None:
  """``preferred`` if among ``values``, else the most common value (ties: the smallest)."""
  values = _f64(values)
  values = values[~np.isnan(values)]
  if not values.size:
    return None
  uniq = np.unique(values)
  with contextlib.suppress(TypeError, ValueError):
    if preferred is not None and np.any(_close(uniq, float(preferred))):
      return float(uniq[np.argmax(_close(uniq, float(preferred)))])
  counts = [int(np.sum(_close(values, u))) for u in uniq]
  return float(uniq[int(np.argmax(counts))])


_HPARAMS = (("gain", ("model", "gain")), ("lr", ("train", "learning_rate")))


def _choose(
  tables: Sequence[Mapping[str, np.ndarray]], config: Mapping[str, Any] | None, clip: bool = True
) -> dict[str, float]:
  """One value per hyper-parameter column that varies: the config's default, else the mode.

  With ``clip``, a varying ``clip`` column is fixed to a clipping-on value
  (``train.clip`` if positive and present, else the most common positive one).
  """
  fixed: dict[str, float] = {}
  columns = [*_HPARAMS, ("clip", ("train", "clip"))] if clip else list(_HPARAMS)
  for column, keys in columns:
    values = next((t[column] for t in tables if column in t and t[column].size), None)
    if values is None or np.unique(_f64(values)).size <= 1:
      continue
    values = _f64(values)
    if column == "clip" and np.any(values > 0):
      values = values[values > 0]
    choice = _pick(values, _cfg(config, *keys))
    if choice is not None:
      fixed[column] = choice
  return fixed


def _select(table: Mapping[str, np.ndarray], fixed: Mapping[str, float]) -> Table:
  mask = np.ones(_n(table), bool)
  for column, value in fixed.items():
    if column in table:
      mask &= _close(table[column], value)
  return _where(table, mask)


def _g(x: float) -> str:
  """A hyper-parameter value as written in a config: 1, 0.5, 0.002."""
  return format(float(x), "g")


def _num(x: float) -> str:
  """A computed number to three significant digits (no exponent from 1e-3 to 1e6)."""
  if not np.isfinite(x):
    return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
  if 1000 <= abs(x) < _HUGE:
    return f"{x:.0f}"
  text = f"{x:.3g}"
  return text.replace("e-0", "e-").replace("e+0", "e+")


def _loss(x: float) -> str:
  """A loss or a loss ratio: as :func:`_num` within [1e-6, 1e6], ``>1e6`` or ``<1e-6`` beyond.

  A blown-up run's loss (1e9 and more) or a vanishing one says all it has to say
  by its bound; its digits would only hide the table.
  """
  if np.isfinite(x):
    if x > _HUGE:
      return ">1e6"
    if x < -_HUGE:
      return "<-1e6"
    if 0 < x < _TINY:
      return "<1e-6"
  return _num(x)


def _signed(x: float) -> str:
  """A rate with its sign: +0.593, -0.105."""
  return ("+" if np.isfinite(x) and x > 0 else "") + _num(x)


def _count(n: int, word: str) -> str:
  """``"1 run"``, ``"3 runs"``."""
  return f"{n} {word}{'' if n == 1 else 's'}"


def _pct(x: float) -> str:
  if not np.isfinite(x):
    return "n/a"
  if x == 0 or 100 * abs(x) >= 10:
    return f"{100 * x:.0f}%"
  return f"{100 * x:.2g}%"


def _join(items: Sequence[str]) -> str:
  items = list(items)
  if len(items) <= 1:
    return "".join(items)
  return ", ".join(items[:-1]) + " and " + items[-1]


def _fixed_note(fixed: Mapping[str, float]) -> str:
  """``"clip = 1, gain = 1"``: the hyper-parameter values a figure was restricted to."""
  return ", ".join(f"{k} = {_g(v)}" for k, v in sorted(fixed.items()))


def _task(summary: Mapping[str, np.ndarray], config: Mapping[str, Any] | None) -> str:
  if "task" in summary and summary["task"].size:
    names = np.unique(summary["task"])
    if names.size == 1:
      return str(names[0])
    return "/".join(str(n) for n in names)
  name = _cfg(config, "task", "name")
  return str(name) if name else "sweep"


def _baselines(summary: Mapping[str, np.ndarray]) -> dict[int, float]:
  if not _has(summary, "T", "baseline"):
    return {}
  out = {}
  for T in np.unique(summary["T"]):
    value = _nanmedian(summary["baseline"][summary["T"] == T])
    if np.isfinite(value):
      out[int(T)] = value
  return out


# --------------------------------------------------------------------------
# Figure styling.
# --------------------------------------------------------------------------


def _style() -> contextlib.AbstractContextManager:
  return plot_lib.style()


def _figure(width: float, height: float) -> Figure:
  return Figure(figsize=(width, height), layout="constrained")


def _finish(ax: Any) -> None:
  ax.tick_params(labelsize=plot_lib.RC["xtick.labelsize"])


def _no_data(ax: Any, text: str = "no data") -> None:
  ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _figure_legend(fig: Figure, axes: Any) -> None:
  """One legend below the panels, each label once."""
  legend: dict[str, Any] = {}
  for ax in np.ravel(axes):
    for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
      legend.setdefault(label, handle)
  if legend:
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=len(legend))


def _nudge(cells: Sequence[str], cell: str) -> float:
  """A small per-cell factor on a log T axis, so equal values of different cells stay visible."""
  return 2 ** (0.04 * (list(cells).index(cell) - (len(cells) - 1) / 2))


def _t_axis(ax: Any, Ts: Sequence[int]) -> None:
  """Log-2 T axis with a tick at every T of the data."""
  Ts = sorted({int(T) for T in Ts})
  ax.set_xscale("log", base=2)
  if Ts:
    ax.set_xlim(Ts[0] / 1.35, Ts[-1] * 1.35)
  ax.xaxis.set_major_locator(ticker.FixedLocator(Ts))
  ax.xaxis.set_major_formatter(ticker.FixedFormatter([str(T) for T in Ts]))
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  ax.set_xlabel("dependency length T (steps)")


# --------------------------------------------------------------------------
# 1. Gradient norm against lag.
# --------------------------------------------------------------------------

_PHASES = (("init", "At initialisation"), ("trained", "After training"))


@_quiet()
def _grad_data(
  gradients: Mapping[str, np.ndarray],
  summary: Mapping[str, np.ndarray],
  config: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
  if not _has(gradients, "cell", "T", "phase", "lag", "log_grad_norm") or not _n(gradients):
    return None
  fixed = _choose([summary, gradients], config)
  g = _select(gradients, fixed)
  if not _n(g):
    return None
  T = int(np.max(g["T"]))
  g = _where(g, g["T"] == T)
  ids = _ids(g)
  phases: dict[str, dict[str, dict[str, Any]]] = {}
  for phase, _ in _PHASES:
    per_cell = {}
    for cell in _cells(g["cell"]):
      mask = (g["phase"] == phase) & (g["cell"] == cell)
      if not mask.any():
        continue
      lags, logs = _matrix(ids[mask], g["lag"][mask], g["log_grad_norm"][mask])
      median, lo, hi = plot_lib.median_band(logs)
      per_cell[cell] = {
        "lags": _f64(lags),
        "logs": logs,
        "median": median,
        "lo": lo,
        "hi": hi,
        "rate": _nanmedian(plot_lib.decay_rates(logs, lags)),
        "runs": logs.shape[0],
        "underflow": int(np.sum(logs == -np.inf)),
      }
    if per_cell:
      phases[phase] = per_cell
  if not phases:
    return None
  return {"T": T, "fixed": fixed, "phases": phases, "task": _task(summary, config)}


@_quiet()
def plot_grad_vs_lag(
  gradients: Mapping[str, np.ndarray],
  summary: Mapping[str, np.ndarray],
  *,
  config: Mapping[str, Any] | None = None,
) -> Figure | None:
  """``||dL/dh_t||`` against the lag ``T-1-t`` per cell, at initialisation and after training.

  At the largest T of ``gradients``; where gain, lr or clip take several values,
  the config's default (``model.gain``, ``train.learning_rate``, a clipping-on
  ``train.clip``) or else the most common value is shown and named in the title.
  Lines are the median of ``ln ||dL/dh_t||`` over seeds, bands the min-max of the
  finite values; the y axis is ``log10`` labelled in powers of ten. Each panel is
  drawn by :func:`rnnlab.plot.grad_norm_vs_lag`.

  Args:
    gradients: ``gradients.csv`` columns.
    summary: ``summary.csv`` columns (the task name; may be empty).
    config: ``config.json`` (the default hyper-parameters; optional).

  Returns:
    The figure, or ``None`` without gradient rows.
  """
  data = _grad_data(gradients, summary, config)
  if data is None:
    return None
  with _style():
    fig = _figure(7.0, 3.0)
    axes = fig.subplots(1, 2, sharey=True)
    shown = []
    runs = 0
    for ax, (phase, title) in zip(axes, _PHASES, strict=True):
      per_cell = data["phases"].get(phase, {})
      labels = {
        cell: f"{_name(cell)}: ×{_num(math.exp(d['rate']))}/step"
        if np.isfinite(d["rate"])
        else _name(cell)
        for cell, d in per_cell.items()
      }
      if per_cell:
        plot_lib.grad_norm_vs_lag(
          {labels[c]: d["logs"] for c, d in per_cell.items()},
          {labels[c]: d["lags"] for c, d in per_cell.items()},
          ax=ax,
          colors={labels[c]: _color(c) for c in per_cell},
          show_rate=False,
          legend=False,
          title=title,
          ylabel="",
        )
        ax.legend(loc="best", title="median, per-step factor")
      else:
        _no_data(ax)
        ax.set_title(title)
        ax.set_xlabel("lag T − 1 − t (steps)")
      for d in per_cell.values():
        shown += [d["median"] / _LN10, d["lo"] / _LN10, d["hi"] / _LN10]
        runs = max(runs, d["runs"])
      _finish(ax)
    axes[0].set_ylabel(r"$\Vert\partial L/\partial h_t\Vert$ (log scale)")
    if shown:
      plot_lib.log10_axis(axes[0], np.concatenate(shown))
    note = f"; {_fixed_note(data['fixed'])}" if data["fixed"] else ""
    fig.suptitle(
      f"{data['task']}, T = {data['T']}: gradient norm against lag "
      f"(median and min–max over {_count(runs, 'seed')}{note})"
    )
  return fig


def _rate_phrase(rate: float) -> str:
  if not np.isfinite(rate):
    return "has too few finite norms to fit a decay rate"
  if rate < -1e-3:
    return (
      f"shrinks by a factor {_num(math.exp(rate))} per step "
      f"(halves every {_num(_LN2 / -rate)} steps)"
    )
  if rate > 1e-3:
    return (
      f"grows by a factor {_num(math.exp(rate))} per step (doubles every {_num(_LN2 / rate)} steps)"
    )
  return f"stays about constant across lags (rate {rate:+.1e} per step)"


def _span_phrase(cell: str, d: Mapping[str, Any]) -> str | None:
  """``"10^-17.2 (Elman)"``: the median norm at the largest lag over that at lag 0."""
  median = d["median"]
  if median.size < 2 or not np.isfinite(median[0]):
    return None
  if median[-1] == -np.inf:
    return f"0 (underflow, {_name(cell)})"
  if not np.isfinite(median[-1]):
    return None
  return f"10^{(median[-1] - median[0]) / _LN10:.1f} ({_name(cell)})"


@_quiet()
def _read_grad_vs_lag(data: Mapping[str, Any]) -> str:
  lines = []
  for phase, title in _PHASES:
    per_cell = data["phases"].get(phase)
    if not per_cell:
      lines.append(f"- {title}: no gradient norms were recorded.")
      continue
    clauses, spans = [], []
    for i, (cell, d) in enumerate(per_cell.items()):
      subject = f"the {_name(cell)} gradient" if i == 0 else f"the {_name(cell)}'s"
      clauses.append(f"{subject} {_rate_phrase(d['rate'])}")
      span = _span_phrase(cell, d)
      if span is not None:
        spans.append(span)
        last = int(d["lags"][-1])
    line = f"- {title} (T = {data['T']}), {'; '.join(clauses)}."
    if spans:
      line += f" At lag {last} the median norm is {_join(spans)} of its size at lag 0."
    lines.append(line)
  init, trained = data["phases"].get("init", {}), data["phases"].get("trained", {})
  slower, faster = [], []
  for cell in init:
    if cell not in trained:
      continue
    a, b = init[cell]["rate"], trained[cell]["rate"]
    if not (np.isfinite(a) and np.isfinite(b)) or abs(b - a) <= 0.05 * max(abs(a), 1e-3):
      continue
    (slower if abs(b) < abs(a) else faster).append(_name(cell))
  changes = []
  if slower:
    changes.append(f"brought the decay rate of {_join(slower)} closer to 0")
  if faster:
    changes.append(f"moved the decay rate of {_join(faster)} further from 0")
  closing = [f"Training {' and '.join(changes)}."] if changes else []
  underflow = sum(d["underflow"] for p in data["phases"].values() for d in p.values())
  if underflow:
    closing.append(
      f"{_count(underflow, 'norm')} underflowed to 0 (ln = -inf); they are left out of the fits "
      "and bands."
    )
  closing.append(
    "Rates are least-squares slopes of ln ||dL/dh_t|| against the lag, median over seeds"
    + (f" ({_fixed_note(data['fixed'])})." if data["fixed"] else ".")
  )
  return "\n".join(lines) + "\n\n" + " ".join(closing)


# --------------------------------------------------------------------------
# 2. Decay rate against the recurrent gain (untrained).
# --------------------------------------------------------------------------


def _by_gain(gains: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
  ux = np.unique(gains)
  med, lo, hi = (np.full(ux.size, np.nan) for _ in range(3))
  for i, x in enumerate(ux):
    v = _f64(values[gains == x])
    v = v[np.isfinite(v)]
    if v.size:
      med[i], lo[i], hi[i] = np.median(v), v.min(), v.max()
  return {"gain": ux, "median": med, "lo": lo, "hi": hi}


@_quiet()
def _gain_data(
  gain_scan: Mapping[str, np.ndarray], config: Mapping[str, Any] | None
) -> dict[str, Any] | None:
  if not _has(gain_scan, "cell", "gain", "decay_rate") or not _n(gain_scan):
    return None
  s = dict(gain_scan)
  T = None
  if "T" in s and s["T"].size:
    T = int(np.max(s["T"]))
    s = _where(s, s["T"] == T)
  gains = _f64(s["gain"])
  cells = {}
  for cell in _cells(s["cell"]):
    m = s["cell"] == cell
    d = {"decay": _by_gain(gains[m], s["decay_rate"][m])}
    if "lyapunov" in s:
      d["lyapunov"] = _by_gain(gains[m], s["lyapunov"][m])
    if "pascanu_bound" in s:
      d["pascanu"] = _by_gain(gains[m], s["pascanu_bound"][m])
    d["seeds"] = int(np.unique(s["seed"][m]).size) if "seed" in s else 1
    cells[cell] = d
  threshold = None
  elman = cells.get("elman", {}).get("pascanu")
  if elman is not None:
    threshold = _crossing(elman["gain"], elman["median"], 1.0)
  return {
    "T": T,
    "cells": cells,
    "threshold": threshold,
    "task": _task({}, config),
    "seeds": max(d["seeds"] for d in cells.values()),
  }


@_quiet()
def plot_decay_vs_gain(
  gain_scan: Mapping[str, np.ndarray], *, config: Mapping[str, Any] | None = None
) -> Figure | None:
  """Untrained decay rate (left) and largest Lyapunov exponent (right) against the gain.

  One line per cell (median over seeds, min-max band), a horizontal line at 0 and
  the Pascanu threshold: the gain where the Elman cell's ``pascanu_bound``
  (``gamma * sigma_max(W_hh)``, median over seeds) crosses 1, linearly
  interpolated, as a dashed vertical line.

  Args:
    gain_scan: ``gain_scan.csv`` columns.
    config: ``config.json`` (the task name for the title; optional).

  Returns:
    The figure, or ``None`` without rows.
  """
  data = _gain_data(gain_scan, config)
  if data is None or not any(
    np.isfinite(d[k]["median"]).any()
    for d in data["cells"].values()
    for k in ("decay", "lyapunov")
    if k in d
  ):
    return None
  with _style():
    fig = _figure(7.0, 3.3)
    axes = fig.subplots(1, 2, sharex=True)
    panels = (
      ("decay", "gradient decay rate (per step)", "Decay rate of ||dL/dh_t|| (<0: vanishing)"),
      ("lyapunov", "largest Lyapunov exponent (per step)", "Largest Lyapunov exponent"),
    )
    for ax, (key, ylabel, title) in zip(axes, panels, strict=True):
      drawn = False
      for cell, d in data["cells"].items():
        if key not in d or not np.isfinite(d[key]["median"]).any():
          continue
        v = d[key]
        ax.fill_between(v["gain"], v["lo"], v["hi"], color=_color(cell), alpha=0.2, lw=0)
        ax.plot(v["gain"], v["median"], "o-", ms=3.5, color=_color(cell), label=_name(cell))
        drawn = True
      ax.axhline(0.0, color="0.3", lw=0.8)
      if data["threshold"] is not None:
        ax.axvline(
          data["threshold"],
          color="black",
          ls="--",
          lw=1.0,
          label=rf"Pascanu threshold ($\gamma\,\sigma_{{max}}(W_{{hh}}) = 1$): "
          f"g = {data['threshold']:.2f}",
        )
      if not drawn:
        _no_data(ax)
      ax.set_xlabel("recurrent gain g (init scale of $W_{hh}$)")
      ax.set_ylabel(ylabel)
      ax.set_title(title)
      _finish(ax)
    _figure_legend(fig, axes)
    where = f", T = {data['T']}" if data["T"] is not None else ""
    fig.suptitle(
      f"{data['task']}{where}, untrained: gradient decay against recurrent gain "
      f"(median and min–max over {_count(data['seeds'], 'seed')})"
    )
  return fig


def _trend(gains: np.ndarray, rates: np.ndarray) -> str:
  """How a per-gain median rate moves over the finite entries (at least one)."""
  ok = np.flatnonzero(np.isfinite(rates))
  i, j = int(ok[0]), int(ok[-1])
  lo, hi = float(np.min(rates[ok])), float(np.max(rates[ok]))
  if hi - lo <= 0.05 * max(abs(lo), abs(hi)) + 1e-3:
    span = f"gains {_g(gains[i])}–{_g(gains[j])}" if i != j else f"gain {_g(gains[i])}"
    return f"stays at about {_signed(_nanmedian(rates))}/step over {span}"
  return (
    f"goes from {_signed(rates[i])}/step at gain {_g(gains[i])} to "
    f"{_signed(rates[j])}/step at gain {_g(gains[j])}"
  )


@_quiet()
def _read_decay_vs_gain(data: Mapping[str, Any]) -> str:
  parts = []
  thr = data["threshold"]
  elman = data["cells"].get("elman")
  if elman is not None:
    decay = elman["decay"]
    gains, rates = decay["gain"], decay["median"]
    ok = np.isfinite(rates)
    bound = elman.get("pascanu")
    if thr is not None:
      parts.append(
        f"The Elman cell's Pascanu bound γ·σ_max(W_hh) crosses 1 at gain {thr:.2f} "
        "(the Pascanu threshold, dashed): below it vanishing gradients are guaranteed, "
        "above it exploding ones become possible."
      )
      below, above = ok & (gains < thr), ok & (gains > thr)
      if below.any():
        i = int(np.flatnonzero(below)[0])
        if np.all(rates[below] < 0):
          parts.append(
            f"Below gain {thr:.2f} the Elman gradient vanishes at every scanned gain "
            f"(decay {_signed(rates[i])}/step at gain {_g(gains[i])}, halving every "
            f"{_num(_LN2 / -rates[i])} steps)."
          )
        else:
          parts.append(
            f"Below gain {thr:.2f} the Elman decay rate ranges from {_num(rates[below].min())} "
            f"to {_num(rates[below].max())} per step."
          )
      if above.any():
        j = int(np.flatnonzero(above)[-1])
        grow = int(np.sum(rates[above] > 0))
        total = int(above.sum())
        at = f"{_signed(rates[j])}/step at gain {_g(gains[j])}"
        if grow == 0:
          parts.append(
            f"Above it the Elman gradient still shrinks at every scanned gain ({at}): a bound "
            "above 1 is necessary for exploding gradients, not sufficient."
          )
        elif grow == total:
          parts.append(f"Above it the Elman gradient grows at every scanned gain ({at}).")
        else:
          parts.append(
            f"Above it the Elman gradient grows at {grow} of {total} scanned gains ({at})."
          )
    elif ok.any():
      if bound is not None and np.isfinite(bound["median"]).any():
        side = "below" if np.nanmax(bound["median"]) < 1 else "above"
        parts.append(
          f"The Elman cell's Pascanu bound stays {side} 1 over the scanned gains, so no "
          "threshold is marked."
        )
      parts.append(f"The Elman decay rate {_trend(gains, rates)}.")
    zero = _crossing(gains, rates)
    if zero is not None:
      parts.append(f"The measured Elman decay rate crosses 0 at gain {zero:.2f}.")
  for cell, d in data["cells"].items():
    if cell == "elman" or not np.isfinite(d["decay"]["median"]).any():
      continue
    gated = " (a gated cell: no Pascanu bound)" if cell in ("lstm", "gru") else ""
    parts.append(
      f"The {_name(cell)}'s decay rate {_trend(d['decay']['gain'], d['decay']['median'])}{gated}."
    )
  crosses, negative, positive = [], [], []
  for cell, d in data["cells"].items():
    v = d.get("lyapunov")
    if v is None or not np.isfinite(v["median"]).any():
      continue
    zero = _crossing(v["gain"], v["median"])
    if zero is not None:
      crosses.append(f"at gain {zero:.2f} for {_name(cell)}")
    elif np.nanmax(v["median"]) < 0:
      negative.append(_name(cell))
    else:
      positive.append(_name(cell))
  lyap = []
  if crosses:
    lyap.append(f"crosses 0 (the edge of chaos) {_join(crosses)}")
  if negative:
    lyap.append(
      f"stays negative (contracting dynamics) at every scanned gain for {_join(negative)}"
    )
  if positive:
    lyap.append(f"stays at or above 0 (chaotic) at every scanned gain for {_join(positive)}")
  if lyap:
    parts.append(f"The largest Lyapunov exponent {'; it '.join(lyap)}.")
  if not parts:
    return "The gain scan holds no finite decay rates."
  where = f" at T = {data['T']}" if data["T"] is not None else ""
  head = f"Untrained models{where}, median over {_count(data['seeds'], 'seed')} per gain."
  return " ".join([head, *parts])


# --------------------------------------------------------------------------
# 3. Training curves.
# --------------------------------------------------------------------------


@_quiet()
def _curve_data(
  metrics: Mapping[str, np.ndarray],
  summary: Mapping[str, np.ndarray],
  config: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
  if not _has(metrics, "cell", "T", "step", "loss") or not _n(metrics):
    return None
  fixed = _choose([summary, metrics], config)
  m = _select(metrics, fixed)
  if not _n(m):
    return None
  ids = _ids(m)
  diverged_from = _divergence_steps(summary, metrics) if "member" in m else {}
  panels: dict[int, dict[str, dict[str, Any]]] = {}
  runs = 0
  for T in sorted(int(t) for t in np.unique(m["T"])):
    per_cell = {}
    for cell in _cells(m["cell"]):
      mask = (m["T"] == T) & (m["cell"] == cell)
      if not mask.any():
        continue
      member_ids = np.unique(ids[mask])
      steps, raw = _matrix(ids[mask], m["step"][mask], m["loss"][mask])
      for k, member in enumerate(member_ids.tolist()):
        # A run that blew up (finitely) is frozen from diverged_at on: its loss after is
        # that of the blown-up parameters, so it ends there as a non-finite one does.
        if member in diverged_from:
          raw[k, steps >= diverged_from[member]] = np.nan
      window = max(1, steps.size // 25)
      diverged = []
      for k, row in enumerate(raw):
        # Diverged: the loss is non-finite (or masked) from some recorded step to the end.
        finite = np.flatnonzero(np.isfinite(row))
        at_step = diverged_from.get(member_ids[k].item())
        if not finite.size:
          step = int(steps[0]) if at_step is None else at_step
          diverged.append((member_ids[k], step, steps[0], np.nan))
        elif finite[-1] < row.size - 1:
          at = int(finite[-1])
          step = int(steps[at + 1]) if at_step is None else at_step
          diverged.append((member_ids[k], step, steps[at], row[at]))
      per_cell[cell] = {
        "steps": _f64(steps),
        "raw": raw,
        "median": plot_lib.smoothed_median(raw, window),
        "window": window,
        "diverged": diverged,
      }
      runs = max(runs, raw.shape[0])
    panels[T] = per_cell
  clips = np.unique(_f64(metrics["clip"])) if "clip" in metrics else np.zeros(0)
  return {
    "panels": panels,
    "fixed": fixed,
    "baselines": _baselines(summary),
    "task": _task(summary, config),
    "runs": runs,
    "clips": clips,
  }


@_quiet()
def plot_training_curves(
  metrics: Mapping[str, np.ndarray],
  summary: Mapping[str, np.ndarray],
  *,
  config: Mapping[str, Any] | None = None,
) -> Figure | None:
  """Training loss against step: one panel per T, one line per cell, log y.

  Each line is the median over seeds of the per-seed trailing moving average
  (over 1/25 of the recorded steps); the raw per-seed curves are drawn faint, a
  diverged seed ends in a cross, and the task's trivial baseline (``baseline``
  of ``summary`` at that T) is the dashed black line. Where clip takes several
  values the clipping-on runs are shown (as gain and lr: see :func:`plot_grad_vs_lag`).
  Each panel is drawn by :func:`rnnlab.plot.training_curves`.

  Args:
    metrics: ``metrics.csv`` columns.
    summary: ``summary.csv`` columns (baselines and the task name; may be empty).
    config: ``config.json`` (the default hyper-parameters; optional).

  Returns:
    The figure, or ``None`` without metric rows.
  """
  data = _curve_data(metrics, summary, config)
  if data is None:
    return None
  Ts = list(data["panels"])
  ncols = min(len(Ts), 4)
  nrows = math.ceil(len(Ts) / ncols)
  with _style():
    fig = _figure(min(max(7.0, 2.6 * ncols + 0.6), 11.0), 2.5 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    positive = []
    for k, (ax, T) in enumerate(zip(axes, Ts, strict=False)):
      per_cell = data["panels"][T]
      names = {cell: _name(cell) for cell in per_cell}
      plot_lib.training_curves(
        {names[c]: d["raw"] for c, d in per_cell.items()},
        {names[c]: d["steps"] for c, d in per_cell.items()},
        baseline=data["baselines"].get(T),
        smooth={names[c]: d["window"] for c, d in per_cell.items()},
        ax=ax,
        colors={names[c]: _color(c) for c in per_cell},
        legend=False,
        title=f"T = {T}",
        ylabel="training loss (log scale)" if k % ncols == 0 else "",
      )
      for d in per_cell.values():
        positive += [d["median"], d["raw"]]
      _finish(ax)
    for ax in axes[len(Ts) :]:
      ax.set_visible(False)
    # One y range for the shared axes, from every panel's losses and baselines.
    values = np.concatenate([p.ravel() for p in positive]) if positive else np.zeros(0)
    limits = plot_lib.loss_limits(values, list(data["baselines"].values()))
    if limits is not None:
      axes[0].set_ylim(*limits)
    _figure_legend(fig, axes[: len(Ts)])
    window = max((d["window"] for p in data["panels"].values() for d in p.values()), default=1)
    note = ""
    if "clip" in data["fixed"]:
      note = f"; clip = {_g(data['fixed']['clip'])} runs"
      rest = {k: v for k, v in data["fixed"].items() if k != "clip"}
      if rest:
        note += f", {_fixed_note(rest)}"
    elif data["fixed"]:
      note = f"; {_fixed_note(data['fixed'])}"
    smooth = f", {window}-point trailing mean" if window > 1 else ""
    fig.suptitle(
      f"{data['task']}: training loss (median over {_count(data['runs'], 'seed')}{smooth}; "
      f"faint: each seed{note})"
    )
  return fig


@_quiet()
def _read_training_curves(data: Mapping[str, Any]) -> str:
  parts = []
  if "clip" in data["fixed"]:
    others = ", ".join(_g(c) for c in data["clips"] if not np.isclose(c, data["fixed"]["clip"]))
    parts.append(
      f"The curves show the clipping-on runs (clip = {_g(data['fixed']['clip'])}; "
      f"also in the data: clip = {others})."
    )
  ratios: dict[str, dict[int, float]] = {}
  lines = []
  for T, per_cell in data["panels"].items():
    baseline = data["baselines"].get(T)
    items = []
    for cell, d in per_cell.items():
      finite = np.flatnonzero(np.isfinite(d["median"]))
      if not finite.size:
        items.append(f"{_name(cell)} diverged")
        continue
      end = float(d["median"][finite[-1]])
      if baseline:
        ratios.setdefault(cell, {})[T] = end / baseline
        items.append(f"{_name(cell)} {_loss(end / baseline)}×")
      else:
        items.append(f"{_name(cell)} {_loss(end)}")
    lines.append(f"T = {T}: {', '.join(items)}")
  what = "relative to the baseline" if data["baselines"] else "(no baseline recorded)"
  parts.append(
    f"Final training loss (median over seeds of the last smoothed value) {what}: "
    + "; ".join(lines)
    + "."
  )
  under = f"clearly below the baseline (under {_BEATS}×)"
  all_Ts = sorted({T for by_T in ratios.values() for T in by_T})
  if len(all_Ts) == 1:
    T = all_Ts[0]
    yes = [_name(c) for c, by_T in ratios.items() if by_T[T] < _BEATS]
    no = [_name(c) for c, by_T in ratios.items() if by_T[T] >= _BEATS]
    if yes:
      parts.append(
        f"At T = {T} the median loss ends {under} for {_join(yes)}"
        + (f" but not for {_join(no)}." if no else ".")
      )
    else:
      parts.append(f"At T = {T} no cell's median loss ends {under}.")
  elif ratios:
    verdicts = []
    for cell, by_T in ratios.items():
      Ts = sorted(by_T)
      beats = [T for T in Ts if by_T[T] < _BEATS]
      if len(beats) == len(Ts):
        where = f"at every T up to {Ts[-1]}" if len(Ts) > 1 else f"at T = {Ts[0]}"
      elif not beats:
        where = "at no T"
      else:
        fails = [T for T in Ts if T not in beats]
        if max(beats) < min(fails):
          where = f"up to T = {max(beats)} but not from T = {min(fails)} on"
        else:
          where = f"only at T = {_join([str(T) for T in beats])}"
      verdicts.append(f"{_name(cell)} {where}")
    parts.append(f"The median loss ends {under} for {_join(verdicts)}.")
  diverged = [
    (cell, T, step)
    for T, per_cell in data["panels"].items()
    for cell, d in per_cell.items()
    for _, step, _, _ in d["diverged"]
  ]
  total = sum(d["raw"].shape[0] for p in data["panels"].values() for d in p.values())
  if diverged:
    where = [f"{_name(c)} at T = {T} (step {s})" for c, T, s in diverged[:8]]
    more = f" and {len(diverged) - 8} more" if len(diverged) > 8 else ""
    parts.append(
      f"{len(diverged)} of the {total} runs shown diverged (non-finite or blown-up training "
      f"loss): "
      f"{', '.join(where)}{more}; their curves end in a cross."
    )
  else:
    parts.append(
      "The run shown did not diverge."
      if total == 1
      else f"None of the {total} runs shown diverged."
    )
  return " ".join(parts)


# --------------------------------------------------------------------------
# 4. Success rate against T.
# --------------------------------------------------------------------------


def _clip_groups(
  table: Mapping[str, np.ndarray], config: Mapping[str, Any] | None
) -> list[tuple[str, float | None, np.ndarray]]:
  """``(label, clip value, row mask)``: clipping on (one value) and off, when present."""
  n = _n(table)
  if "clip" not in table:
    return [("all runs", None, np.ones(n, bool))]
  clip = _f64(table["clip"])
  groups = []
  on = _pick(clip[clip > 0], _cfg(config, "train", "clip")) if np.any(clip > 0) else None
  if on is not None:
    groups.append((f"clip = {_g(on)}", on, _close(clip, on)))
  if np.any(clip == 0):
    groups.append(("no clipping", 0.0, clip == 0))
  return groups


@_quiet()
def _success_data(
  summary: Mapping[str, np.ndarray], config: Mapping[str, Any] | None
) -> dict[str, Any] | None:
  if not _has(summary, "cell", "T", "solved") or not _n(summary):
    return None
  fixed = _choose([summary], config, clip=False)
  s = _select(summary, fixed)
  groups = []
  for label, clip, mask in _clip_groups(s, config):
    cells = {}
    for cell in _cells(s["cell"][mask]):
      cm = mask & (s["cell"] == cell)
      Ts = sorted(int(t) for t in np.unique(s["T"][cm]))
      solved = [int(np.sum(s["solved"][cm & (s["T"] == T)])) for T in Ts]
      runs = [int(np.sum(cm & (s["T"] == T))) for T in Ts]
      steps = []
      for T in Ts:
        st = s["steps_to_solve"][cm & (s["T"] == T)] if "steps_to_solve" in s else np.zeros(0)
        st = _f64(st)
        steps.append(_nanmedian(st[st >= 0]))
      cells[cell] = {"T": Ts, "solved": solved, "runs": runs, "steps": steps}
    groups.append({"label": label, "clip": clip, "cells": cells})
  all_clips = np.unique(_f64(s["clip"])) if "clip" in s else np.zeros(0)
  return {
    "groups": groups,
    "fixed": fixed,
    "Ts": sorted(int(t) for t in np.unique(s["T"])),
    "task": _task(summary, config),
    "clips": all_clips,
  }


@_quiet()
def plot_success_vs_T(  # noqa: N802  (T as in the papers)
  summary: Mapping[str, np.ndarray], *, config: Mapping[str, Any] | None = None
) -> Figure | None:
  """The share of runs solved (``solved``) against T per cell; solid: clipping on, dashed: off.

  Points are nudged sideways per cell so equal rates stay visible; the number
  of runs per point is written in the panel (or at each point when it varies).

  Args:
    summary: ``summary.csv`` columns.
    config: ``config.json`` (the default hyper-parameters; optional).

  Returns:
    The figure, or ``None`` without rows or a ``solved`` column.
  """
  data = _success_data(summary, config)
  if data is None:
    return None
  with _style():
    fig = _figure(4.2, 3.2)
    ax = fig.subplots()
    cells = _cells(*(np.array(list(g["cells"]), dtype=np.str_) for g in data["groups"]))
    counts = {n for g in data["groups"] for d in g["cells"].values() for n in d["runs"]}
    for group in data["groups"]:
      ls, marker = ("--", "s") if group["clip"] == 0.0 else ("-", "o")
      for cell, d in group["cells"].items():
        x = np.array(d["T"], float) * _nudge(cells, cell)
        rate = np.array(d["solved"]) / np.maximum(np.array(d["runs"]), 1)
        label = _name(cell) + (f", {group['label']}" if len(data["groups"]) > 1 else "")
        ax.plot(x, rate, ls=ls, marker=marker, ms=4, color=_color(cell), label=label)
        if len(counts) > 1:
          for xi, ri, n in zip(x, rate, d["runs"], strict=True):
            ax.annotate(f"n={n}", (xi, ri), textcoords="offset points", xytext=(3, 3), fontsize=6)
    _t_axis(ax, data["Ts"])
    ax.set_ylim(-0.04, 1.04)
    ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    ax.set_ylabel("success rate (share of runs solved)")
    ax.legend(
      loc="center left",
      bbox_to_anchor=(1.0, 0.5),
      title=f"{_count(counts.pop(), 'seed')} per point"
      if len(counts) == 1
      else "n = seeds per point",
      title_fontsize=7.5,
    )
    fixed = dict(data["fixed"])
    if len(data["groups"]) == 1 and data["groups"][0]["clip"] is not None:
      fixed["clip"] = data["groups"][0]["clip"]
    note = f" ({_fixed_note(fixed)})" if fixed else ""
    ax.set_title(f"{data['task']}: success rate against T{note}")
    _finish(ax)
  return fig


def _success_phrase(d: Mapping[str, Any]) -> str:
  Ts, k, n = d["T"], d["solved"], d["runs"]
  rates = [a / b if b else 0.0 for a, b in zip(k, n, strict=True)]
  counts = ", ".join(f"{a}/{b}" for a, b in zip(k, n, strict=True))
  where = f"T = {', '.join(map(str, Ts))}"
  if all(a == b for a, b in zip(k, n, strict=True)):
    text = "solves every run " + (
      f"at every T up to {Ts[-1]}" if len(Ts) > 1 else f"at T = {Ts[0]}"
    )
  elif not any(k):
    text = "solves no run " + ("at any T" if len(Ts) > 1 else f"at T = {Ts[0]}")
  elif len(Ts) == 1:
    return f"solves {k[0]} of {n[0]} runs at T = {Ts[0]}" + _steps_phrase(d)
  else:
    text = "solves some runs"
    for j in range(1, len(Ts)):
      head, tail = rates[:j], rates[j:]
      up, on = f"up to T = {Ts[j - 1]}", f"from T = {Ts[j]} on"
      if all(r == 1 for r in head) and all(r == 0 for r in tail):
        text = f"solves every run {up} and none {on}"
      elif all(r >= 0.5 for r in head) and all(r == 0 for r in tail):
        text = f"solves at least half the runs {up} and none {on}"
      elif all(r >= 0.5 for r in head) and all(r < 0.5 for r in tail):
        text = f"solves at least half the runs {up} and fewer than half {on}"
      elif all(r > 0 for r in head) and all(r == 0 for r in tail):
        text = f"solves some runs {up} and none {on}"
      else:
        continue
      break
  text += f" ({counts} at {where})" if len(Ts) > 1 else f" ({counts})"
  return text + _steps_phrase(d)


def _steps_phrase(d: Mapping[str, Any]) -> str:
  solved_steps = [(T, s) for T, s in zip(d["T"], d["steps"], strict=True) if np.isfinite(s)]
  if not solved_steps:
    return ""
  T, s = solved_steps[-1]
  return f", in a median of {_num(s)} steps at T = {T}"


def _read_success(data: Mapping[str, Any]) -> str:
  lines = []
  for group in data["groups"]:
    if not group["cells"]:
      continue
    head = {
      None: "All runs",
      0.0: "Without clipping",
    }.get(group["clip"], f"With clipping ({group['label']})")
    items = [f"{_name(c)} {_success_phrase(d)}." for c, d in group["cells"].items()]
    lines.append(f"- {head}: {' '.join(items)}")
  solved = sum(sum(d["solved"]) for g in data["groups"] for d in g["cells"].values())
  text = "\n".join(lines)
  if not solved:
    text += "\n\nNo run solved the task at any T."
  shown = [g["clip"] for g in data["groups"] if g["clip"] is not None]
  hidden = [c for c in data["clips"] if not any(np.isclose(c, x) for x in shown)]
  if hidden:
    text += (
      f"\n\nRuns with clip = {_join([_g(c) for c in hidden])} are not shown (see the success "
      "table)."
    )
  if data["fixed"]:
    text += f"\n\nShown: {_fixed_note(data['fixed'])}."
  return text


# --------------------------------------------------------------------------
# 5. What clipping does.
# --------------------------------------------------------------------------


@_quiet()
def _clipping_data(
  summary: Mapping[str, np.ndarray],
  metrics: Mapping[str, np.ndarray],
  config: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
  if not _has(summary, "cell", "T", "clip") or not np.any(_f64(summary["clip"]) > 0):
    return None
  fixed = _choose([summary], config, clip=False)
  s = _select(summary, fixed)
  groups = _clip_groups(s, config)
  on = next(((clip, mask) for _, clip, mask in groups if clip is not None and clip > 0), None)
  if on is None:
    return None
  on_clip, on_mask = on
  fraction = _f64(s["clip_fraction"]) if "clip_fraction" in s else np.full(_n(s), np.nan)
  if _has(metrics, "clipped") and "member" in s and "member" in metrics:
    need = ~np.isfinite(fraction) & on_mask
    for i in np.flatnonzero(need):
      rows = metrics["member"] == s["member"][i]
      if rows.any():
        fraction[i] = float(np.mean(_f64(metrics["clipped"][rows])))
  ratio = np.full(_n(s), np.nan)
  if _has(s, "final_loss", "baseline"):
    ratio = _f64(s["final_loss"]) / _f64(s["baseline"])
  diverged = _diverged_mask(s, metrics)
  ratio[diverged] = np.inf  # the worst outcome, whatever (finite) loss it was frozen at
  cells: dict[str, dict[str, Any]] = {}
  for cell in _cells(s["cell"]):
    per: dict[str, Any] = {"fraction": {}, "ratio": {}, "solved": {}, "diverged": {}}
    for T in sorted(int(t) for t in np.unique(s["T"][s["cell"] == cell])):
      base = (s["cell"] == cell) & (s["T"] == T)
      on = base & on_mask
      if on.any():
        per["fraction"][T] = float(np.nanmean(fraction[on]))
      for _, clip, mask in groups:
        key = "on" if clip == on_clip else "off"
        rows = base & mask
        if not rows.any():
          continue
        per["ratio"].setdefault(key, {})[T] = _median_inf(ratio[rows])
        if "solved" in s:
          per["solved"].setdefault(key, {})[T] = (int(np.sum(s["solved"][rows])), int(rows.sum()))
        per["diverged"].setdefault(key, {})[T] = int(np.sum(diverged[rows]))
    cells[cell] = per
  return {
    "cells": cells,
    "clip": on_clip,
    "has_off": any(clip == 0.0 for _, clip, _ in groups),
    "fixed": fixed,
    "task": _task(summary, config),
    "Ts": sorted(int(t) for t in np.unique(s["T"])),
  }


@_quiet()
def plot_clipping(
  summary: Mapping[str, np.ndarray],
  metrics: Mapping[str, np.ndarray],
  *,
  config: Mapping[str, Any] | None = None,
) -> Figure | None:
  """How often clipping fires (left) and what it changes (right), against T per cell.

  Left: mean ``clip_fraction`` of the clipping-on runs (from ``metrics``'
  ``clipped`` where the summary lacks it). Right: median held-out final loss
  over the baseline, clipping on (solid) and off (dashed); a diverged run counts
  as an infinite loss.

  Args:
    summary: ``summary.csv`` columns.
    metrics: ``metrics.csv`` columns (a fallback for ``clip_fraction``; may be empty).
    config: ``config.json`` (the default clip and hyper-parameters; optional).

  Returns:
    The figure, or ``None`` if no run had ``clip > 0``.
  """
  data = _clipping_data(summary, metrics, config)
  if data is None:
    return None
  with _style():
    fig = _figure(7.0, 3.0)
    ax_f, ax_r = fig.subplots(1, 2)
    ratios = []
    cells = list(data["cells"])
    for cell, per in data["cells"].items():
      color = _color(cell)
      nudge = _nudge(cells, cell)
      if per["fraction"]:
        Ts = sorted(per["fraction"])
        y = [per["fraction"][T] for T in Ts]
        ax_f.plot(np.array(Ts) * nudge, y, "o-", ms=4, color=color, label=_name(cell))
      for key, ls, marker in (("on", "-", "o"), ("off", "--", "s")):
        by_T = per["ratio"].get(key, {})
        if not by_T:
          continue
        Ts = sorted(by_T)
        y = np.array([by_T[T] for T in Ts])
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
        label = f"{_name(cell)}, " + (f"clip = {_g(data['clip'])}" if key == "on" else "no clip")
        ax_r.plot(np.array(Ts) * nudge, y, ls=ls, marker=marker, ms=4, color=color, label=label)
        ratios.append(y[np.isfinite(y)])
    _t_axis(ax_f, data["Ts"])
    fractions = [v for p in data["cells"].values() for v in p["fraction"].values()]
    top = max((v for v in fractions if np.isfinite(v)), default=0.0)
    ax_f.set_ylim(0, min(1.05, max(1.15 * top, 0.01)))
    decimals = 0 if top >= 0.05 else None
    ax_f.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=decimals))
    ax_f.set_ylabel("share of steps clipped")
    ax_f.set_title(f"How often clipping fires (clip = {_g(data['clip'])})")
    ax_f.legend(loc="best")
    _t_axis(ax_r, data["Ts"])
    ax_r.axhline(1.0, color="black", ls="--", lw=1.0, label="trivial baseline")
    values = np.concatenate(ratios) if ratios else np.zeros(0)
    if values.size:
      ax_r.set_yscale("log")
      lo, hi = min(float(values.min()), 1.0), max(float(values.max()), 1.0)
      ax_r.set_ylim(lo / 2, hi * 2)
    else:
      _no_data(ax_r, "no finite final losses")
    ax_r.set_ylabel("median final loss / baseline")
    ax_r.set_title("What it changes: held-out loss")
    ax_r.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    for ax in (ax_f, ax_r):
      _finish(ax)
    note = f"; {_fixed_note(data['fixed'])}" if data["fixed"] else ""
    fig.suptitle(f"{data['task']}: gradient clipping{note}")
  return fig


def _read_clipping(data: Mapping[str, Any]) -> str:
  parts = []
  fired = []
  for cell, per in data["cells"].items():
    f = {T: v for T, v in per["fraction"].items() if np.isfinite(v)}
    if not f:
      continue
    Ts = sorted(f)
    text = f"{_pct(f[Ts[-1]])} of {_name(cell)} steps at T = {Ts[-1]}"
    if len(Ts) > 1:
      text += f" ({_pct(f[Ts[0]])} at T = {Ts[0]})"
    fired.append(text)
  clip = _g(data["clip"])
  if fired:
    parts.append(f"Clipping (threshold {clip}) fired on {_join(fired)}.")
  else:
    parts.append(f"No clipping fraction was recorded for the clip = {clip} runs.")
  if not data["has_off"]:
    parts.append("No run had clipping off, so its effect cannot be measured here.")
    return " ".join(parts)
  changes, same = [], 0
  for cell, per in data["cells"].items():
    on, off = per["solved"].get("on", {}), per["solved"].get("off", {})
    for T in sorted(set(on) & set(off)):
      if on[T][0] * off[T][1] != off[T][0] * on[T][1]:
        changes.append(
          f"{_name(cell)} at T = {T} from {off[T][0]}/{off[T][1]} to {on[T][0]}/{on[T][1]}"
        )
      else:
        same += 1
  if changes:
    parts.append(
      f"It changed the success rate (off → on) of {_join(changes)}"
      + (f", and left {_count(same, 'other cell/T pair')} unchanged." if same else ".")
    )
  elif same:
    parts.append(
      f"It changed no success rate ({_count(same, 'cell/T pair')} compared, each solving the "
      "same share of runs with and without it)."
    )
  div_on = sum(sum(per["diverged"].get("on", {}).values()) for per in data["cells"].values())
  div_off = sum(sum(per["diverged"].get("off", {}).values()) for per in data["cells"].values())
  if div_on or div_off:
    parts.append(f"Runs that diverged: {div_off} without clipping, {div_on} with it.")
  T = data["Ts"][-1] if data["Ts"] else None
  cmp = []
  for cell, per in data["cells"].items():
    on, off = per["ratio"].get("on", {}), per["ratio"].get("off", {})
    if T in on and T in off:
      cmp.append(f"{_name(cell)} {_ratio(on[T])} vs {_ratio(off[T])}")
  if cmp:
    parts.append(
      f"At T = {T} the median final loss over the baseline, with vs without clipping, is "
      + "; ".join(cmp)
      + "."
    )
  return " ".join(parts)


# --------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------


def _ratio(x: float) -> str:
  if x == np.inf:
    return "∞ (most runs diverged)"
  return _loss(x) if np.isfinite(x) else "n/a"


def _diverged_mask(
  summary: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray]
) -> np.ndarray:
  """Per summary row: ``diverged_at >= 0``, a ``diverged`` step, a non-finite final or last loss."""
  n = _n(summary)
  out = np.zeros(n, bool)
  if "diverged_at" in summary:
    out |= _f64(summary["diverged_at"]) >= 0
  if "member" in summary:
    out |= np.isin(summary["member"], list(_divergence_steps({}, metrics)))
  if "final_loss" in summary:
    out |= ~np.isfinite(_f64(summary["final_loss"]))
  if _has(metrics, "member", "step", "loss") and "member" in summary and _n(metrics):
    order = np.lexsort((metrics["step"], metrics["member"]))
    member, loss = metrics["member"][order], _f64(metrics["loss"])[order]
    last = np.r_[member[1:] != member[:-1], True]
    bad = set(member[last][~np.isfinite(loss[last])].tolist())
    out |= np.isin(summary["member"], list(bad))
  return out


def _divergence_steps(
  summary: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray]
) -> dict[int, int]:
  """``{member: step}`` of the diverged runs: ``diverged_at``, else the first ``diverged`` step.

  (Runs that only went non-finite, in tables without either column, are not listed.)
  """
  out: dict[int, int] = {}
  if _has(metrics, "member", "step", "diverged") and _n(metrics):
    bad = np.asarray(metrics["diverged"], bool)
    members, steps = metrics["member"][bad].tolist(), metrics["step"][bad].tolist()
    for member, step in zip(members, steps, strict=True):
      out[member] = min(step, out.get(member, step))
  if _has(summary, "member", "diverged_at"):
    members, steps = summary["member"].tolist(), summary["diverged_at"].tolist()
    for member, step in zip(members, steps, strict=True):
      if step >= 0:
        out[member] = int(step)
  return out


def _divergence_step(summary: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray], i: int):
  if "diverged_at" in summary and summary["diverged_at"][i] >= 0:
    return int(summary["diverged_at"][i])
  if "member" in summary:
    step = _divergence_steps({}, metrics).get(summary["member"][i].item())
    if step is not None:
      return step
  if _has(metrics, "member", "step", "loss") and "member" in summary:
    rows = metrics["member"] == summary["member"][i]
    bad = rows & ~np.isfinite(_f64(metrics["loss"]))
    if bad.any():
      return int(np.min(metrics["step"][bad]))
  return None


def _values_text(values: np.ndarray, zero_off: bool = False) -> str:
  uniq = np.unique(_f64(values))
  texts = [("0 (off)" if zero_off and v == 0 else _g(v)) for v in uniq]
  return _join(texts)


@_quiet()
def _overview(
  summary: Mapping[str, np.ndarray],
  metrics: Mapping[str, np.ndarray],
  config: Mapping[str, Any],
) -> str:
  n = _n(summary)
  task = _task(summary, config)
  if not n:
    return "`summary.csv` holds no runs, so there is nothing to report."
  parts = []
  preset = _cfg(config, "preset")
  cells = _cells(summary["cell"]) if "cell" in summary else []
  cell_text = _join([f"{_name(c)}" + (" (tanh RNN)" if c == "elman" else "") for c in cells])
  hidden = ""
  if "hidden" in summary and np.unique(summary["hidden"]).size == 1:
    hidden = f" with {int(summary['hidden'][0])} hidden units"
  baselines = _baselines(summary)
  base_values = sorted(set(baselines.values()))
  if len(base_values) == 1:
    base = f" (trivial-predictor baseline loss {_loss(base_values[0])})"
  elif base_values:
    base = f" (trivial-predictor baseline loss {_loss(base_values[0])} to {_loss(base_values[-1])}, by T)"
  else:
    base = ""
  Ts = sorted(int(t) for t in np.unique(summary["T"])) if "T" in summary else []
  lead = f"The sweep (preset `{preset}`)" if preset else "The sweep"
  text = f"{lead} trained {_count(n, 'run')}: the {cell_text} cell{'s' if len(cells) > 1 else ''}{hidden}"
  text += f" on the `{task}` task{base}"
  if Ts:
    text += f" at T = {_join([str(T) for T in Ts])}"
  setting_cols = [c for c in ("cell", "T", "gain", "lr", "clip") if c in summary]
  if "seed" in summary and setting_cols:
    keys = np.stack(
      [
        _f64(summary[c])
        if c != "cell"
        else np.unique(summary[c], return_inverse=True)[1].astype(float)
        for c in setting_cols
      ],
      1,
    )
    _, counts = np.unique(keys, axis=0, return_counts=True)
    lo, hi = int(counts.min()), int(counts.max())
    text += (
      f", {lo} seed{'s' if lo != 1 else ''} per setting"
      if lo == hi
      else f", {lo}–{hi} seeds per setting"
    )
  hp = []
  if "clip" in summary:
    hp.append(
      f"clipping threshold{'s' if np.unique(summary['clip']).size > 1 else ''} {_values_text(summary['clip'], True)}"
    )
  if "gain" in summary:
    several = np.unique(summary["gain"]).size > 1
    hp.append(f"recurrent gain{'s' if several else ''} {_values_text(summary['gain'])}")
  if "lr" in summary:
    several = np.unique(summary["lr"]).size > 1
    hp.append(f"learning rate{'s' if several else ''} {_values_text(summary['lr'])}")
  if hp:
    text += ", with " + _join(hp)
  steps = _cfg(config, "train", "num_steps")
  if steps is None and _has(metrics, "step") and _n(metrics):
    steps = int(np.max(metrics["step"])) + 1
  if steps is not None:
    text += f", for {steps} steps"
    optimizer = _cfg(config, "train", "optimizer")
    batch = _cfg(config, "train", "batch_size")
    if optimizer:
      text += f" of {optimizer}"
    if batch:
      text += f" with batch size {batch}"
  parts.append(text + ".")
  diverged = _diverged_mask(summary, metrics)
  if diverged.any():
    items = []
    for i in np.flatnonzero(diverged)[:8]:
      desc = [f"{_name(str(summary['cell'][i]))}" if "cell" in summary else "run"]
      if "T" in summary:
        desc.append(f"T = {int(summary['T'][i])}")
      extra = [f"{c} {_g(summary[c][i])}" for c in ("clip", "seed") if c in summary]
      step = _divergence_step(summary, metrics, i)
      if step is not None:
        extra.append(f"step {step}")
      items.append(" ".join(desc) + (f" ({', '.join(extra)})" if extra else ""))
    more = f" and {int(diverged.sum()) - 8} more" if diverged.sum() > 8 else ""
    parts.append(
      f"{int(diverged.sum())} of {n} runs diverged (non-finite or blown-up loss): "
      f"{'; '.join(items)}{more}."
    )
  else:
    parts.append("The run did not diverge." if n == 1 else f"None of the {n} runs diverged.")
  return " ".join(parts)


def _grid(summary: Mapping[str, np.ndarray], entry: Callable[[np.ndarray], str]) -> list[str]:
  """A markdown table: a row per cell and varying clip/gain/lr, a column per T.

  ``entry(rows)`` writes the cell of one row mask (``–`` where it selects none).
  """
  Ts = sorted(int(t) for t in np.unique(summary["T"]))
  variants = [c for c in ("clip", "gain", "lr") if c in summary and np.unique(summary[c]).size > 1]
  keys = sorted({tuple(float(summary[c][i]) for c in variants) for i in range(_n(summary))})
  header = ["cell", *variants, *(f"T = {T}" for T in Ts)]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for cell in _cells(summary["cell"]):
    for key in keys:
      rows = summary["cell"] == cell
      for c, v in zip(variants, key, strict=True):
        rows &= _close(summary[c], v)
      if not rows.any():
        continue
      entries = []
      for T in Ts:
        r = rows & (summary["T"] == T)
        entries.append(entry(r) if r.any() else "–")
      labels = [
        ("off" if c == "clip" and v == 0 else _g(v)) for c, v in zip(variants, key, strict=True)
      ]
      lines.append("| " + " | ".join([_name(cell), *labels, *entries]) + " |")
  return lines


@_quiet()
def _success_table(summary: Mapping[str, np.ndarray], metrics: Mapping[str, np.ndarray]) -> str:
  if not _has(summary, "cell", "T", "solved") or not _n(summary):
    return "No success data: `summary.csv` has no rows or no `solved` column."
  ratio = np.full(_n(summary), np.nan)
  if _has(summary, "final_loss", "baseline"):
    ratio = _f64(summary["final_loss"]) / _f64(summary["baseline"])
  diverged = _diverged_mask(summary, metrics)

  def entry(r: np.ndarray) -> str:
    k, n = int(np.sum(summary["solved"][r])), int(r.sum())
    # A diverged run is counted as such, not averaged in at the loss it was frozen at.
    finite = ratio[r & ~diverged][np.isfinite(ratio[r & ~diverged])]
    text = f"{_pct(k / n)} ({k}/{n})"
    if finite.size:
      text += f" · {_loss(float(np.mean(finite)))}"
    d = int(np.sum(diverged[r]))
    if d:
      text += f" · {d} diverged"
    return text

  caption = (
    "Each entry: the share of runs solved (solved / runs) · the mean held-out final loss "
    "divided by the task's trivial baseline, over the runs that did not diverge (below 1 beats "
    "the trivial predictor)."
  )
  return "\n".join(_grid(summary, entry)) + "\n\n" + caption


# A horizon and its flag in summary.csv, and the phase of gradients.csv it was measured at.
_HORIZONS = (
  ("memory_horizon_init", "memory_horizon_init_censored", "init"),
  ("memory_horizon", "memory_horizon_censored", "trained"),
)


def _censored(
  summary: Mapping[str, np.ndarray], gradients: Mapping[str, np.ndarray], column: str
) -> np.ndarray | None:
  """Per row: whether the horizon in ``column`` is censored (equals the largest lag measured).

  From the sweep's ``<column>_censored`` flag; for tables written before it, from
  the run's largest lag in ``gradients.csv``; None where neither says.
  """
  flag, phase = next((f, p) for c, f, p in _HORIZONS if c == column)
  if flag in summary:
    return np.asarray(summary[flag], bool)
  if not (_has(gradients, "member", "phase", "lag") and "member" in summary and _n(gradients)):
    return None
  rows = gradients["phase"] == phase
  members, inverse = np.unique(gradients["member"][rows], return_inverse=True)
  largest = np.full(members.size, -1, np.int64)
  np.maximum.at(largest, inverse.ravel(), gradients["lag"][rows])
  where = np.minimum(np.searchsorted(members, summary["member"]), max(members.size - 1, 0))
  if not members.size or not np.all(members[where] == summary["member"]):
    return None
  return np.asarray(summary[column]) >= largest[where]


def _censored_median(values: np.ndarray, censored: np.ndarray) -> tuple[float, bool]:
  """The median of horizons some of which are lower bounds, and whether it is one too.

  A censored horizon equals the largest lag, so within one (cell, T) it sorts
  last; the median is a lower bound when a middle value is.
  """
  order = np.lexsort((censored, values))
  values, censored = _f64(values)[order], censored[order]
  lo, hi = (values.size - 1) // 2, values.size // 2
  return float((values[lo] + values[hi]) / 2), bool(censored[lo] or censored[hi])


def _horizon_text(value: float, censored: bool) -> str:
  return (">= " if censored else "") + _g(value)


@_quiet()
def _horizon_table(
  summary: Mapping[str, np.ndarray],
  gradients: Mapping[str, np.ndarray],
  config: Mapping[str, Any] | None,
) -> str | None:
  """The memory horizons per cell and T, censored ones marked ``>= L``; None without them."""
  columns = [c for c, _, _ in _HORIZONS]
  if not _has(summary, "cell", "T", *columns) or not _n(summary):
    return None
  flags = {c: _censored(summary, gradients, c) for c in columns}

  def entry(r: np.ndarray) -> str:
    texts = []
    for c in columns:
      known = flags[c] if flags[c] is not None else np.zeros(_n(summary), bool)
      texts.append(_horizon_text(*_censored_median(summary[c][r], known[r])))
    return " → ".join(texts)

  fraction = _cfg(config, "diagnostics", "horizon_fraction")
  share = (
    f"{_pct(float(fraction))} of its value at lag 0"
    if isinstance(fraction, int | float) and not isinstance(fraction, bool)
    else "a fixed fraction (`diagnostics.horizon_fraction`) of its value at lag 0"
  )
  caption = [
    "Each entry: the memory horizon at initialisation → after training, median over seeds: the "
    f"largest lag T − 1 − t at which ||dL/dh_t|| is still at least {share}."
  ]
  if all(f is not None for f in flags.values()):
    n = _n(summary)
    counts = [int(np.sum(flags[c])) for c in columns]
    caption.append(
      "`>= L` marks a censored horizon: the norm never fell below that fraction within the "
      "lags measured, so the largest lag L is only a lower bound on the horizon (a longer "
      "sequence or a smaller fraction would measure it); a median that takes a censored "
      "horizon is a lower bound too. "
      f"Censored: {counts[0]} of {n} horizons at initialisation, {counts[1]} of {n} after "
      "training."
    )
  else:
    caption.append(
      "Whether a horizon is censored is not recorded (`summary.csv` has no "
      "`memory_horizon_censored` column and `gradients.csv` does not say), so a horizon equal "
      "to the largest lag may only be a lower bound."
    )
  return "\n".join(_grid(summary, entry)) + "\n\n" + " ".join(caption)


def _save_atomic(path: str, write: Callable[[Any], None]) -> None:
  folder = os.path.dirname(path) or "."
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def _why(status: str, name: str, otherwise: str) -> str:
  if status == "missing":
    return f"`{name}` is missing from the workdir"
  if status == "empty":
    return f"`{name}` has no rows"
  return otherwise


@_quiet()
def write_report(
  workdir: str | os.PathLike, formats: Sequence[str] = ("png", "svg"), dpi: int = 120
) -> list[str]:
  """Writes the figures and ``report.md`` for the sweep tables in ``workdir``.

  Each figure goes to ``workdir/figures/<name>.<format>`` (names in
  :data:`FIGURES`) and the report to ``workdir/report.md``, each through a
  temporary file in the same folder and ``os.replace``. The report says what was
  run, tabulates the success rate per cell and T, and gives each figure (the PNG
  embedded, the other formats linked) a reading computed from the data; a figure
  without data is left out with a sentence saying why.

  Args:
    workdir: the sweep's folder (``summary.csv`` required; ``metrics.csv``,
      ``gradients.csv``, ``gain_scan.csv`` and ``config.json`` optional).
    formats: image formats matplotlib can write, e.g. ``("png", "svg", "pdf")``.
    dpi: resolution of the raster formats.

  Returns:
    The paths written: the figure files, then ``report.md``.

  Raises:
    FileNotFoundError: ``workdir/summary.csv`` is missing.
    ValueError: an unknown format, or a malformed table or ``config.json``.
  """
  workdir = os.fspath(workdir)
  formats = [formats] if isinstance(formats, str) else list(formats)
  supported = Figure().canvas.get_supported_filetypes()
  bad = [f for f in formats if f not in supported]
  if not formats or bad:
    raise ValueError(f"write_report: formats must be among {sorted(supported)}; got {formats!r}")
  summary = read_table(os.path.join(workdir, "summary.csv"))
  metrics, metrics_status = _read_optional(workdir, "metrics.csv")
  gradients, gradients_status = _read_optional(workdir, "gradients.csv")
  gain_scan, scan_status = _read_optional(workdir, "gain_scan.csv")
  config = _read_config(workdir)

  sections: list[tuple[str, str, Callable[[], Figure | None], Callable[[], str], str]] = [
    (
      "grad_vs_lag",
      "Gradient norm against lag",
      lambda: plot_grad_vs_lag(gradients, summary, config=config),
      lambda: _read_grad_vs_lag(_grad_data(gradients, summary, config)),
      _why(gradients_status, "gradients.csv", "`gradients.csv` lacks the needed columns"),
    ),
    (
      "decay_vs_gain",
      "Gradient decay against recurrent gain (untrained)",
      lambda: plot_decay_vs_gain(gain_scan, config=config),
      lambda: _read_decay_vs_gain(_gain_data(gain_scan, config)),
      _why(scan_status, "gain_scan.csv", "")
      + (
        " (no untrained gain scan was run)"
        if scan_status != "ok"
        else "`gain_scan.csv` holds no finite decay rates or Lyapunov exponents"
      ),
    ),
    (
      "training_curves",
      "Training curves",
      lambda: plot_training_curves(metrics, summary, config=config),
      lambda: _read_training_curves(_curve_data(metrics, summary, config)),
      _why(metrics_status, "metrics.csv", "`metrics.csv` lacks the needed columns"),
    ),
    (
      "success_vs_T",
      "Success rate against T",
      lambda: plot_success_vs_T(summary, config=config),
      lambda: _read_success(_success_data(summary, config)),
      _why(
        "ok" if _n(summary) else "empty",
        "summary.csv",
        "`summary.csv` has no `solved` column",
      ),
    ),
    (
      "clipping",
      "Gradient clipping",
      lambda: plot_clipping(summary, metrics, config=config),
      lambda: _read_clipping(_clipping_data(summary, metrics, config)),
      "no run had gradient clipping on (clip > 0)",
    ),
  ]

  figures_dir = os.path.join(workdir, "figures")
  os.makedirs(figures_dir, exist_ok=True)
  written: list[str] = []
  task = _task(summary, config)
  title = "# Gradient flow sweep" + (f": the `{task}` task" if task != "sweep" else "")
  md = [title, "", _overview(summary, metrics, config), ""]
  md += ["## Success rate per cell and T", "", _success_table(summary, metrics), ""]
  horizons = _horizon_table(summary, gradients, config)
  if horizons is not None:
    md += ["## Memory horizon per cell and T", "", horizons, ""]
  embed = "png" if "png" in formats else formats[0]
  for number, (name, title, build, read, why) in enumerate(sections, start=1):
    md += [f"## {number}. {title}", ""]
    with _style():
      fig = build()
      if fig is None:
        md += [f"Figure skipped: {why}.", ""]
        continue
      for fmt in formats:
        path = os.path.join(figures_dir, f"{name}.{fmt}")
        _save_atomic(
          path,
          lambda f, fig=fig, fmt=fmt: fig.savefig(
            f, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_SAVE_METADATA.get(fmt)
          ),
        )
        written.append(path)
    links = " · ".join(f"[{fmt.upper()}](figures/{name}.{fmt})" for fmt in formats if fmt != embed)
    md += [f"![{title}](figures/{name}.{embed})", ""]
    if links:
      md += [links, ""]
    md += [read(), ""]
  report = os.path.join(workdir, "report.md")
  text = "\n".join(md).rstrip() + "\n"
  _save_atomic(report, lambda f: f.write(text.encode("utf-8")))
  written.append(report)
  return written
