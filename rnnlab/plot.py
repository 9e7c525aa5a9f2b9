r"""Figures of the gradient-flow diagnostics, ready for a paper or a slide.

Each function takes the arrays that :mod:`rnnlab.diagnostics` (or a training
run) returns and gives back a :class:`matplotlib.figure.Figure`; pass ``ax``
(``axes`` for the two-panel figures) to draw into your own figure instead, and
that figure is returned. No pyplot: nothing is shown or registered, so the
functions run headless and in threads; ``fig.savefig("x.pdf")`` writes it.

=====================  ==============================================  ==========================================
function               draws                                           from
=====================  ==============================================  ==========================================
``grad_norm_vs_lag``   ``||dL/dh_t||`` against the lag (log scale)      ``log_norms_by_lag(step_norms(...))``, or
                                                                        any ``ln`` norms by lag (the runner's)
``jacobian_norms``     ``||dc_T/dc_t||_2``, ``_F`` and every            :func:`rnnlab.diagnostics.jacobian_norms`
                       singular value against the lag
``eigenvalues``        eigenvalues in the complex plane, unit circle    a square matrix, or ``{name: matrix}``
``singular_values``    singular values, descending, line at 1           a matrix, or ``{name: matrix}``
``recurrent_spectra``  both, one colour per gate block of ``W_hh``      a cell and its params
``lyapunov_spectrum``  ``lambda_i`` against ``i``, line at 0             :func:`rnnlab.diagnostics.lyapunov_spectrum`
``gate_statistics``    gate means and saturated share over time         :func:`rnnlab.diagnostics.gate_statistics`
``training_curves``    loss against step (log), trivial baseline        ``metrics["loss"]`` of :mod:`rnnlab.train`
=====================  ==============================================  ==========================================

Conventions:

- A series is one array or a mapping ``{label: array}`` (one line and one
  legend entry per label). An array with a leading runs axis, ``(N, L)`` (seeds,
  or sequences of a batch), is drawn as its median with a min-max band over the
  finite values (training curves: every run faint, the median bold).
- Norms come in natural logs, as the diagnostics return them, and are drawn as
  ``log10`` on a linear axis labelled in powers of ten, so a norm far below the
  float range (``ln = -1000``) keeps its tail: a line's y data are
  ``ln norm / ln 10``; ``-inf`` (an underflow to 0) leaves a gap.
- Colours are Okabe-Ito (colour-blind safe); a label naming a built-in cell
  (``elman``, ``lstm``, ``gru``, any case) gets that cell's colour, the one the
  runner's report uses. Line styles and markers tell the kinds of line apart too.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib import patheffects, ticker
from matplotlib.figure import Figure

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
CELL_COLORS = {"elman": "#D55E00", "lstm": "#0072B2", "gru": "#009E73"}
CELL_NAMES = {"elman": "Elman", "lstm": "LSTM", "gru": "GRU"}

RC = {
  "font.size": 9.0,
  "axes.titlesize": 9.5,
  "axes.labelsize": 9.0,
  "xtick.labelsize": 8.0,
  "ytick.labelsize": 8.0,
  "legend.fontsize": 7.5,
  "legend.title_fontsize": 7.5,
  "figure.titlesize": 10.0,
  "axes.spines.top": False,
  "axes.spines.right": False,
  "axes.grid": True,
  "grid.alpha": 0.3,
  "grid.linewidth": 0.5,
  "lines.linewidth": 1.6,
  "legend.frameon": False,
  "svg.hashsalt": "rnnlab",
}
# A white halo keeps a bold line readable over the faint ones beneath it.
HALO = [patheffects.withStroke(linewidth=3.0, foreground="white", alpha=0.8)]

_LN10 = math.log(10.0)
_FAINT_POINTS = 1000  # a faint per-run curve is thinned to about this many points

Series = Any  # an array, or a mapping {label: array}


# --------------------------------------------------------------------------
# Style, colours, small helpers.
# --------------------------------------------------------------------------


def style() -> contextlib.AbstractContextManager:
  """The rc settings every figure here is drawn under (a ``matplotlib.rc_context``)."""
  return mpl.rc_context(RC)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """No NumPy floating-point or all-NaN-slice warnings inside (NaN and inf are data here)."""
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)
    yield


def _styled(fn: Callable[..., Figure]) -> Callable[..., Figure]:
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with style(), _quiet():
      return fn(*args, **kwargs)

  return wrapped


def new_figure(width: float = 4.5, height: float = 3.2, **subplots: Any) -> tuple[Figure, Any]:
  """A constrained-layout :class:`Figure` (no overlapping labels) and its ``subplots(...)``."""
  with style():
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(**subplots)


def _axes(ax: Any, width: float, height: float) -> tuple[Figure, Any]:
  if ax is None:
    return new_figure(width, height)
  return ax.figure, ax


def cell_color(name: str) -> str | None:
  """The runner's colour of a built-in cell (``"lstm"``, ``"LSTM"``...), else None."""
  return CELL_COLORS.get(str(name).lower())


def _colors(labels: Sequence[str], colors: Any) -> dict[str, str]:
  """A colour per label: given (mapping or sequence), a cell's own, then unused Okabe-Ito."""
  if colors is not None and not isinstance(colors, Mapping):
    colors = dict(zip(labels, colors, strict=False))
  colors = dict(colors or {})
  out = {}
  for label in labels:
    chosen = colors.get(label) or cell_color(label)
    if chosen is not None:
      out[label] = chosen
  spare = iter([c for c in OKABE_ITO if c not in out.values()] or OKABE_ITO)
  for label in labels:
    if label not in out:
      out[label] = next(spare, None) or OKABE_ITO[len(out) % len(OKABE_ITO)]
  return out


def _named(data: Series, label: str | None) -> dict[str, np.ndarray]:
  """``{label: float64 array}`` from one array or a mapping; one unnamed array gets ``label``."""
  if isinstance(data, Mapping):
    return {str(k): np.asarray(v, np.float64) for k, v in data.items()}
  return {"" if label is None else label: np.asarray(data, np.float64)}


def _runs(values: np.ndarray, name: str, what: str) -> np.ndarray:
  """``(N, L)``: a 1-D series as one run, leading axes flattened into runs."""
  if values.ndim == 0:
    raise ValueError(f"{name}: {what} must have at least one axis; got a scalar")
  return values.reshape(-1, values.shape[-1])


def _per(arg: Any, label: str) -> Any:
  """``arg[label]`` when ``arg`` is a mapping (one value per series), else ``arg``."""
  return arg.get(label) if isinstance(arg, Mapping) else arg


def _lags(lags: Any, length: int, name: str) -> np.ndarray:
  if lags is None:
    return np.arange(length, dtype=np.float64)
  lags = np.asarray(lags, np.float64)
  lags = lags.reshape(-1, lags.shape[-1])[0] if lags.ndim > 1 else lags
  if lags.shape != (length,):
    raise ValueError(f"{name}: lags has {lags.shape[-1]} entries for {length} values")
  return lags


def median_band(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(median, lo, hi)`` over the runs (first) axis of ``(N, L)`` values.

  The median takes every value (``-inf`` included, NaN left out); the band is
  the min and max of the finite values (NaN where a column has none).
  """
  values = np.asarray(values, np.float64)
  values = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values[None]
  with _quiet():
    finite = np.where(np.isfinite(values), values, np.nan)
    return np.nanmedian(values, axis=0), np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)


def _finite(y: np.ndarray) -> np.ndarray:
  return np.where(np.isfinite(y), y, np.nan)


def _draw(ax, x, runs, color, label, *, scale=1.0, band=True, **line) -> list[np.ndarray]:
  """One run as a line, several as their median with a min-max band; returns what was drawn."""
  if runs.shape[0] == 1:
    y = _finite(runs[0] / scale)
    ax.plot(x, y, color=color, label=label or None, **line)
    return [y]
  median, lo, hi = (v / scale for v in median_band(runs))
  if band:
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)
  ax.plot(x, _finite(median), color=color, label=label or None, **line)
  return [median, lo, hi]


def _legend(ax: Any, **kwargs: Any) -> None:
  if ax.get_legend_handles_labels()[1]:
    ax.legend(**kwargs)


def log10_axis(ax: Any, values: Any) -> None:
  """A linear y axis holding ``log10`` values, labelled as powers of ten, at least 2 decades."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if not values.size:
    return
  lo, hi = float(values.min()), float(values.max())
  if hi - lo < 2:
    mid = 0.5 * (lo + hi)
    lo, hi = mid - 1, mid + 1
  pad = 0.04 * (hi - lo)
  ax.set_ylim(lo - pad, hi + pad)
  ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True, steps=[1, 2, 5, 10]))
  ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"$10^{{{v:.0f}}}$"))
  if hi - lo <= 5:
    minor = [k + math.log10(m) for k in range(math.floor(lo), math.ceil(hi)) for m in range(2, 10)]
    ax.yaxis.set_minor_locator(ticker.FixedLocator(minor))
  else:
    ax.yaxis.set_minor_locator(ticker.NullLocator())


def _factor(rate: float) -> str:
  return f"×{math.exp(rate):.3g}/step" if np.isfinite(rate) else "no fit"


# --------------------------------------------------------------------------
# Gradient norm against lag.
# --------------------------------------------------------------------------


def log_norms_by_lag(step_norms: Any) -> np.ndarray:
  """``ln ||dL/dh_t||`` ordered by lag ``T - 1 - t``, from :func:`~rnnlab.diagnostics.step_norms`.

  Args:
    step_norms: ``(T, *batch)`` norms, time first (one leaf of ``step_norms``,
      e.g. ``norms[0].h``, the first layer's LSTM).

  Returns:
    ``(*batch, T)``: entry ``k`` is the log norm at step ``t = T - 1 - k``, so a
    loss at the last step reads from lag 0; a zero norm gives ``-inf``.
  """
  norms = np.asarray(step_norms, np.float64)
  if norms.ndim == 0:
    raise ValueError("log_norms_by_lag: step_norms must be (T, *batch); got a scalar")
  with _quiet():
    return np.moveaxis(np.log(norms)[::-1], 0, -1)


def decay_rates(log_norms: Any, lags: Any = None) -> np.ndarray:
  """Least-squares slope of ``ln norm`` on lag per run (last axis), finite values only.

  As :func:`rnnlab.diagnostics.decay_rate`, in NumPy: NaN for a run with fewer
  than two finite values. ``exp(rate)`` is the factor per step.
  """
  runs = np.asarray(log_norms, np.float64)
  lag = _lags(lags, runs.shape[-1], "decay_rates")
  keep = np.isfinite(runs)
  count = keep.sum(axis=-1)
  with _quiet():
    mean_lag = np.sum(np.where(keep, lag, 0), axis=-1) / count
    mean_log = np.sum(np.where(keep, runs, 0), axis=-1) / count
    dl = np.where(keep, lag - mean_lag[..., None], 0)
    cov = np.sum(dl * np.where(keep, runs - mean_log[..., None], 0), axis=-1)
    var = np.sum(dl * dl, axis=-1)
    return np.where((count >= 2) & (var > 0), cov / var, np.nan)


@_styled
def grad_norm_vs_lag(
  log_norms: Series,
  lags: Any = None,
  *,
  ax: Any = None,
  label: str | None = None,
  colors: Any = None,
  show_rate: bool = True,
  legend: bool = True,
  title: str | None = "Gradient norm against lag",
  xlabel: str = "lag T − 1 − t (steps)",
  ylabel: str = r"$\Vert\partial L/\partial h_t\Vert$ (log scale)",
) -> Figure:
  r"""``||dL/dh_t||`` (or any norm) against the lag, on a log scale.

  Args:
    log_norms: ``ln`` norms by lag, ``(L,)`` or ``(N, L)`` runs (median and
      min-max band), or ``{label: such}``: :func:`log_norms_by_lag` of
      ``diagnostics.step_norms``, ``JacobianNorms.log_spectral``, the runner's
      ``log_grad_norms``.
    lags: ``(L,)`` lags (default ``0..L-1``), or ``{label: lags}``.
    ax: draw into this axes.
    label: legend label of a single array.
    colors: a colour per label (mapping or sequence).
    show_rate: append the per-step factor ``exp(rate)`` to each label, ``rate``
      the median over runs of :func:`decay_rates`.
    legend: draw the legend.
    title, xlabel, ylabel: the axes' texts.

  Returns:
    The figure. Each series' line holds ``ln / ln 10`` of its input (the median
    for several runs).
  """
  series = _named(log_norms, label)
  fig, ax = _axes(ax, 4.5, 3.2)
  colors = _colors(list(series), colors)
  shown, several = [], False
  for name, values in series.items():
    runs = _runs(values, "grad_norm_vs_lag", "log_norms")
    x = _lags(_per(lags, name), runs.shape[1], "grad_norm_vs_lag")
    text = name
    if show_rate:
      rate = float(np.nanmedian(decay_rates(runs, x))) if runs.size else math.nan
      text = f"{name}: {_factor(rate)}" if name else _factor(rate)
    shown += _draw(ax, x, runs, colors[name], text, scale=_LN10)
    several |= runs.shape[0] > 1
  if shown:
    log10_axis(ax, np.concatenate(shown))
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  if legend:
    _legend(ax, loc="best", title="median, min–max over runs" if several else None)
  return fig


# --------------------------------------------------------------------------
# Jacobian norms and spectra.
# --------------------------------------------------------------------------


@_styled
def jacobian_norms(
  norms: Any,
  *,
  ax: Any = None,
  singular_values: bool = True,
  color: str = OKABE_ITO[0],
  legend: bool = True,
  title: str | None = "Jacobian norms against lag",
  xlabel: str = "lag T − t (steps)",
  ylabel: str = r"$\Vert\partial c_T/\partial c_t\Vert$ (log scale)",
) -> Figure:
  r"""``||dc_T/dc_t||`` against the lag: spectral (bold), Frobenius (dashed), each ``sigma_i``.

  Args:
    norms: a :class:`rnnlab.diagnostics.JacobianNorms`; with batch dimensions
      every line is the median over the sequences (the spectral norm with its
      min-max band). The power method's NaN Frobenius norms and empty singular
      values are left out.
    ax: draw into this axes.
    singular_values: also draw ``sigma_2 .. sigma_n`` as faint lines (``sigma_1``
      is the spectral norm).
    color: the colour of the lines.
    legend, title, xlabel, ylabel: as :func:`grad_norm_vs_lag`.

  Returns:
    The figure; y data are ``ln / ln 10`` of the inputs.
  """
  spectral = _runs(np.asarray(norms.log_spectral, np.float64), "jacobian_norms", "log_spectral")
  x = _lags(norms.lags, spectral.shape[1], "jacobian_norms")
  frobenius = np.asarray(norms.log_frobenius, np.float64).reshape(spectral.shape)
  sv = np.asarray(norms.log_singular_values, np.float64)
  sv = sv.reshape(math.prod(sv.shape[:-2]), *sv.shape[-2:]) if sv.ndim >= 2 else sv[None, :, None]
  fig, ax = _axes(ax, 4.5, 3.2)
  shown = []
  if singular_values and sv.shape[-1] > 1:
    median_sv = np.nanmedian(sv, axis=0) / _LN10  # (L, n)
    for i in range(1, median_sv.shape[1]):
      y = _finite(median_sv[:, i])
      label = rf"$\sigma_2 \ldots \sigma_{{{median_sv.shape[1]}}}$" if i == 1 else None
      ax.plot(x, y, color=color, lw=0.6, alpha=0.35, label=label, zorder=1)
      shown.append(y)
  if np.isfinite(frobenius).any():
    y = _finite(np.nanmedian(frobenius, axis=0) / _LN10)
    ax.plot(x, y, color=color, ls="--", lw=1.2, label="Frobenius", zorder=2)
    shown.append(y)
  shown += _draw(ax, x, spectral, color, r"spectral ($\sigma_1$)", scale=_LN10, zorder=3)
  if shown:
    log10_axis(ax, np.concatenate(shown))
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  if legend:
    _legend(
      ax,
      loc="best",
      title=f"median over {spectral.shape[0]} sequences" if spectral.shape[0] > 1 else None,
    )
  return fig


def _matrices(data: Any, label: str | None) -> dict[str, np.ndarray]:
  if isinstance(data, Mapping):
    return {str(k): np.asarray(v) for k, v in data.items()}
  return {"" if label is None else label: np.asarray(data)}


def _eigvals(name: str, m: np.ndarray) -> np.ndarray:
  if m.ndim == 1:
    return m.astype(np.complex128)
  if m.ndim != 2 or m.shape[0] != m.shape[1]:
    raise ValueError(f"eigenvalues: {name or 'matrix'} must be square or 1-D; got {m.shape}")
  return np.linalg.eigvals(m.astype(np.float64 if np.isrealobj(m) else np.complex128))


@_styled
def eigenvalues(
  matrices: Any,
  *,
  ax: Any = None,
  label: str | None = None,
  colors: Any = None,
  legend: bool = True,
  title: str | None = "Eigenvalues",
) -> Figure:
  r"""Eigenvalues in the complex plane with the unit circle ``|lambda| = 1``.

  Outside the circle a linear recurrence ``h' = h W`` grows along that
  direction, inside it shrinks. Each label in the legend carries the spectral
  radius ``rho = max |lambda|``.

  Args:
    matrices: a square matrix (``W_hh``), a 1-D array of eigenvalues, or
      ``{label: either}`` (e.g. the gate blocks of a gated cell).
    ax, label, colors, legend, title: as :func:`grad_norm_vs_lag`.

  Returns:
    The figure; each set is one scatter (``PathCollection``) whose offsets are
    ``(Re lambda, Im lambda)``.
  """
  sets = {k: _eigvals(k, m) for k, m in _matrices(matrices, label).items()}
  fig, ax = _axes(ax, 3.8, 3.6)
  colors = _colors(list(sets), colors)
  markers = "os^Dvp<>"
  theta = np.linspace(0, 2 * np.pi, 361)
  ax.plot(np.cos(theta), np.sin(theta), color="0.35", ls="--", lw=1.0, label=r"$|\lambda| = 1$")
  ax.axhline(0, color="0.6", lw=0.5, zorder=0)
  ax.axvline(0, color="0.6", lw=0.5, zorder=0)
  reach = 1.0
  for i, (name, values) in enumerate(sets.items()):
    radius = float(np.max(np.abs(values))) if values.size else math.nan
    text = rf"$\rho$ = {radius:.3g}"
    ax.scatter(
      values.real,
      values.imag,
      s=14,
      marker=markers[i % len(markers)],
      color=colors[name],
      alpha=0.8,
      lw=0,
      label=f"{name} ({text})" if name else text,
      zorder=3,
    )
    if np.isfinite(radius):
      reach = max(reach, radius)
  lim = 1.08 * reach
  ax.set_xlim(-lim, lim)
  ax.set_ylim(-lim, lim)
  ax.set_aspect("equal")
  ax.set_xlabel(r"Re $\lambda$")
  ax.set_ylabel(r"Im $\lambda$")
  if title:
    ax.set_title(title)
  if legend:
    _legend(ax, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  return fig


def _svals(name: str, m: np.ndarray) -> np.ndarray:
  if m.ndim == 1:
    return -np.sort(-np.asarray(m, np.float64))
  if m.ndim != 2:
    raise ValueError(f"singular_values: {name or 'matrix'} must be 2-D or 1-D; got {m.shape}")
  return np.linalg.svd(np.asarray(m, np.float64), compute_uv=False)


def _two_five(v: float, _: Any = None) -> str:
  """``v`` as a plain number where its leading digit is 2 or 5, else no label."""
  if not v > 0:
    return ""
  lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9))
  return f"{v:g}" if lead in (2, 5) else ""


@_styled
def singular_values(
  matrices: Any,
  *,
  ax: Any = None,
  label: str | None = None,
  colors: Any = None,
  legend: bool = True,
  title: str | None = "Singular values",
) -> Figure:
  r"""Singular values ``sigma_1 >= sigma_2 >= ...`` against their index, log scale, a line at 1.

  ``sigma_1 < 1`` for the recurrent weights of a tanh RNN is Pascanu's
  sufficient condition for vanishing gradients; an orthogonal matrix times a
  gain ``g`` has every ``sigma_i = g``.

  Args:
    matrices: a matrix, a 1-D array of singular values, or ``{label: either}``.
    ax, label, colors, legend, title: as :func:`grad_norm_vs_lag`.

  Returns:
    The figure; each set's line holds its singular values in descending order
    against ``1..n``.
  """
  sets = {k: _svals(k, m) for k, m in _matrices(matrices, label).items()}
  fig, ax = _axes(ax, 4.2, 3.2)
  colors = _colors(list(sets), colors)
  markers = "os^Dvp<>"
  for i, (name, values) in enumerate(sets.items()):
    top = rf"$\sigma_1$ = {values[0]:.3g}" if values.size else "empty"
    ax.plot(
      np.arange(1, values.size + 1),
      values,
      marker=markers[i % len(markers)],
      ms=3,
      lw=1.0,
      color=colors[name],
      label=f"{name} ({top})" if name else top,
    )
  ax.axhline(1.0, color="0.35", ls="--", lw=1.0, label=r"$\sigma = 1$")
  ax.set_yscale("log")
  every = np.concatenate([v for v in sets.values() if v.size] or [np.ones(1)])
  every = every[np.isfinite(every) & (every > 0)]
  # Always show the line at 1, and at least a factor 2 either way: an orthogonal
  # matrix's equal singular values would otherwise zoom into their rounding.
  lo, hi = min(float(np.min(every, initial=1.0)), 1.0), max(float(np.max(every, initial=1.0)), 1.0)
  ax.set_ylim(lo / 2, hi * 2)
  if hi / lo < 100:  # under two decades: plain numbers, at the minor ticks 2 and 5 too
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(_two_five))
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.set_xlabel("index i (descending)")
  ax.set_ylabel(r"singular value $\sigma_i$ (log scale)")
  if title:
    ax.set_title(title)
  if legend:
    _legend(ax, loc="best")
  return fig


def recurrent_blocks(cell: Any, params: Any) -> dict[str, np.ndarray]:
  """``{name: (H, H) block}`` of the recurrent weights, one per gate (``"h"`` for Elman).

  As :func:`rnnlab.diagnostics.recurrent_spectra` splits them: the cell's
  ``CellParts.recurrent`` weight (``(H, G)``, applied ``h @ w``) cut into
  ``CellParts.blocks``.
  """
  parts = getattr(cell, "parts", None)
  if parts is None or not parts.blocks:
    raise ValueError(
      f"recurrent_blocks: {getattr(cell, 'name', cell)!r} has no CellParts with named gate "
      "blocks; the built-in elman, lstm, gru (reset_after=True) and diagonal cells have them"
    )
  w, _ = parts.recurrent(params)
  w = np.asarray(w, np.float64)
  return dict(zip(parts.blocks, np.split(w, len(parts.blocks), axis=-1), strict=True))


@_styled
def recurrent_spectra(cell: Any, params: Any, *, axes: Any = None) -> Figure:
  """Eigenvalues (left) and singular values (right) of each gate block of ``W_hh``.

  The picture behind :func:`rnnlab.diagnostics.recurrent_spectra`'s spectral
  radius and ``sigma_max`` (one colour per block: LSTM ``i, f, g, o``, GRU
  ``r, z, n``).

  Args:
    cell, params: a cell with :class:`~rnnlab.cells.CellParts` blocks and its
      parameters (one layer's).
    axes: two axes to draw into.
  """
  blocks = recurrent_blocks(cell, params)
  if len(blocks) == 1:
    blocks = {r"$W_{hh}$": next(iter(blocks.values()))}
  else:
    blocks = {f"{name} block": w for name, w in blocks.items()}
  if axes is None:
    fig, axes = new_figure(8.0, 3.4, nrows=1, ncols=2)
  else:
    fig = axes[0].figure
  eigenvalues(blocks, ax=axes[0], title=f"{getattr(cell, 'name', 'cell')}: eigenvalues")
  singular_values(blocks, ax=axes[1], title="singular values", legend=True)
  return fig


# --------------------------------------------------------------------------
# Lyapunov spectrum.
# --------------------------------------------------------------------------


@_styled
def lyapunov_spectrum(
  exponents: Series,
  *,
  ax: Any = None,
  label: str | None = None,
  colors: Any = None,
  legend: bool = True,
  title: str | None = "Lyapunov spectrum",
) -> Figure:
  r"""The Lyapunov exponents ``lambda_1 >= lambda_2 >= ...`` against ``i``, with a line at 0.

  ``lambda_1 < 0``: nearby trajectories (and gradients) contract like
  ``exp(lambda_1 * lag)``; ``> 0``: they diverge (chaos).

  Args:
    exponents: ``(k,)`` per-step exponents, ``(N, k)`` for several sequences or
      seeds (median and min-max band), or ``{label: such}``.
    ax, label, colors, legend, title: as :func:`grad_norm_vs_lag`.

  Returns:
    The figure; each series' line holds its exponents (the median for several)
    against ``1..k``.
  """
  series = _named(exponents, label)
  fig, ax = _axes(ax, 4.2, 3.2)
  colors = _colors(list(series), colors)
  markers = "os^Dvp<>"
  ax.axhline(0.0, color="0.35", lw=0.8, zorder=1)
  for i, (name, values) in enumerate(series.items()):
    runs = _runs(values, "lyapunov_spectrum", "exponents")
    x = np.arange(1, runs.shape[1] + 1)
    _draw(ax, x, runs, colors[name], name, marker=markers[i % len(markers)], ms=3.5, zorder=3)
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.set_xlabel("index i")
  ax.set_ylabel(r"Lyapunov exponent $\lambda_i$ (per step)")
  if title:
    ax.set_title(title)
  if legend:
    _legend(ax, loc="best")
  return fig


# --------------------------------------------------------------------------
# Gates over time.
# --------------------------------------------------------------------------

_GATE_NAMES = {
  "i": "input gate i",
  "f": "forget gate f",
  "o": "output gate o",
  "r": "reset gate r",
  "z": "update gate z",
  "g": "candidate g (tanh)",
  "tanh_c": r"tanh($c$)",
  "n": "candidate n (tanh)",
  "h": "h (tanh)",
}
GATE_QUANTITIES = ("mean", "saturated")


@_styled
def gate_statistics(
  stats: Mapping[str, Mapping[str, Mapping[str, Any]]],
  *,
  quantities: Sequence[str] = GATE_QUANTITIES,
  axes: Any = None,
  legend: bool = True,
  xlabel: str = "step t",
) -> Figure:
  """Gate means and the saturated share of every gate and tanh unit against the step.

  Args:
    stats: :func:`rnnlab.diagnostics.gate_statistics`'s ``{"gates": {name: s},
      "units": {name: s}}``, each ``s["mean"]`` and ``s["saturated"]`` of shape
      ``(T,)`` (or ``(N, T)``, e.g. vmapped over seeds: median and min-max band).
    quantities: the panels, from ``"mean"`` (the gates' means in ``[0, 1]``; a
      cell without gates, Elman, shows its tanh units' means in ``[-1, 1]``)
      and ``"saturated"`` (the share within the saturation margin of either end,
      gates solid, units dashed).
    axes: one axes per quantity to draw into.
    legend: one legend below the panels.
    xlabel: the x axes' label.

  Returns:
    The figure; each line holds the input's values for one gate or unit.
  """
  bad = [q for q in quantities if q not in GATE_QUANTITIES]
  if bad or not quantities:
    raise ValueError(f"gate_statistics: quantities must be among {GATE_QUANTITIES}; got {bad}")
  gates, units = dict(stats.get("gates", {})), dict(stats.get("units", {}))
  names = [*gates, *units]
  if axes is None:
    fig, axes = new_figure(3.6 * len(quantities) + 0.4, 3.2, nrows=1, ncols=len(quantities))
  else:
    fig = np.ravel(axes)[0].figure
  axes = np.atleast_1d(axes).ravel()
  if len(axes) != len(quantities):
    raise ValueError(f"gate_statistics: {len(quantities)} quantities need as many axes")
  colors = _colors(names, None if len(names) > len(OKABE_ITO) else OKABE_ITO)
  for ax, quantity in zip(axes, quantities, strict=True):
    # Gates solid, tanh units dashed; the means panel shows the units only where no gate is.
    lines = [(n, s, "-") for n, s in gates.items()]
    if quantity == "saturated" or not gates:
      lines += [(n, s, "--") for n, s in units.items()]
    for name, s, ls in lines:
      runs = _runs(np.asarray(s[quantity], np.float64), "gate_statistics", quantity)
      x = np.arange(runs.shape[1])
      _draw(ax, x, runs, colors[name], _GATE_NAMES.get(name, name), ls=ls)
    if quantity == "mean":
      ax.set_ylim(-0.03 if gates else -1.05, 1.03 if gates else 1.05)
      ax.set_ylabel("mean over batch and units")
      ax.set_title("Gate means" if gates else "Unit means")
    else:
      top = max((float(np.nanmax(s[quantity])) for _, s, _ in lines), default=0.0)
      top = top if np.isfinite(top) else 1.0
      high = min(1.02, max(1.15 * top, 0.01))
      ax.set_ylim(-0.03 * high, high)  # a line at 0 stays clear of the axis
      decimals = 0 if top >= 0.05 else None
      ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=decimals))
      ax.set_ylabel("share saturated")
      ax.set_title("Saturation")
    ax.set_xlabel(xlabel)
  if legend:
    handles: dict[str, Any] = {}
    for ax in axes:
      for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
        handles.setdefault(text, handle)
    if handles:
      fig.legend(
        list(handles.values()), list(handles), loc="outside lower center", ncol=min(len(handles), 5)
      )
  return fig


# --------------------------------------------------------------------------
# Training curves.
# --------------------------------------------------------------------------


def trailing_mean(y: Any, window: int) -> np.ndarray:
  """Trailing moving average of ``y`` (last axis) over its finite values.

  NaN where ``y`` is not finite, so a run that diverged ends where it did.
  """
  y = np.asarray(y, np.float64)
  if window <= 1:
    return np.where(np.isfinite(y), y, np.nan)
  finite = np.isfinite(y)
  zero = np.zeros((*y.shape[:-1], 1))
  sums = np.concatenate([zero, np.cumsum(np.where(finite, y, 0.0), axis=-1)], axis=-1)
  counts = np.concatenate([zero, np.cumsum(finite, axis=-1)], axis=-1)
  idx = np.arange(y.shape[-1])
  lo = np.maximum(idx + 1 - window, 0)
  count = counts[..., idx + 1] - counts[..., lo]
  with _quiet():
    out = (sums[..., idx + 1] - sums[..., lo]) / count
  return np.where(finite & (count > 0), out, np.nan)


def smoothed_median(losses: Any, window: int = 1) -> np.ndarray:
  """The median over runs (first axis of ``(N, S)``) of each run's :func:`trailing_mean`."""
  runs = np.asarray(losses, np.float64)
  runs = runs.reshape(-1, runs.shape[-1]) if runs.ndim > 1 else runs[None]
  with _quiet():
    return np.nanmedian(trailing_mean(runs, window), axis=0)


def loss_limits(values: Any, baselines: Sequence[float] = ()) -> tuple[float, float] | None:
  """Log-axis limits for losses that keep a blow-up from squashing the rest.

  From the 0.5th percentile of the positive values and baselines (over 1.5) to
  their maximum times 1.5, but at most 10 times the larger of their 99th
  percentile and the largest baseline; None without positive values.
  """
  baselines = [float(b) for b in baselines if b is not None and np.isfinite(b) and b > 0]
  values = np.concatenate([np.asarray(values, np.float64).ravel(), baselines])
  values = values[np.isfinite(values) & (values > 0)]
  if not values.size:
    return None
  lo = float(np.percentile(values, 0.5)) / 1.5
  top = max(baselines, default=float(np.max(values)))
  hi = min(float(np.max(values)) * 1.5, max(top, float(np.percentile(values, 99))) * 10)
  return (lo, hi) if hi > lo > 0 else None


def diverged_ends(steps: Any, losses: Any) -> list[tuple[int, float, float]]:
  """``(run, step, loss)`` where each run's loss turns non-finite for good: its last finite value.

  A run whose loss is finite at the last step is not listed; one with no finite
  loss is listed with NaN step and loss.
  """
  steps = np.asarray(steps, np.float64)
  runs = np.asarray(losses, np.float64)
  runs = runs.reshape(-1, runs.shape[-1]) if runs.ndim > 1 else runs[None]
  out = []
  for k, row in enumerate(runs):
    finite = np.flatnonzero(np.isfinite(row))
    if not finite.size:
      out.append((k, math.nan, math.nan))
    elif finite[-1] < row.size - 1:
      out.append((k, float(steps[finite[-1]]), float(row[finite[-1]])))
  return out


@_styled
def training_curves(
  losses: Series,
  steps: Any = None,
  *,
  baseline: float | None = None,
  smooth: int | Mapping[str, int] = 1,
  ax: Any = None,
  label: str | None = None,
  colors: Any = None,
  legend: bool = True,
  title: str | None = "Training loss",
  xlabel: str = "training step (updates)",
  ylabel: str = "training loss (log scale)",
) -> Figure:
  """Loss against step on a log scale, with the task's trivial baseline as a dashed line.

  Several runs ``(N, S)`` (seeds, vmapped members) are drawn faint, one line
  each, under their bold median (of each run's trailing mean over ``smooth``
  steps: :func:`smoothed_median`); a run whose loss turns non-finite for good
  (diverged, or masked from its divergence on) ends in a cross at its last finite
  loss. One run is one line (smoothed, over its raw curve drawn faint, when
  ``smooth > 1``).

  Args:
    losses: ``(S,)`` or ``(N, S)`` per-step losses (``metrics["loss"]`` of
      :func:`rnnlab.train.make_train`, vmapped or not), or ``{label: such}``.
    steps: ``(S,)`` the step of each entry (default ``0..S-1``), or ``{label: steps}``.
    baseline: the trivial predictor's loss (``rnnlab.tasks.get(...).baseline``).
    smooth: the trailing window of the bold line, in entries (or ``{label: window}``).
    ax, label, colors, legend, title, xlabel, ylabel: as :func:`grad_norm_vs_lag`.

  Returns:
    The figure: per series the faint lines (one per run, thinned to about 1000
    points), then the bold line (the median, or the run itself without
    smoothing); non-positive losses leave gaps.
  """
  series = _named(losses, label)
  windows = {name: _per(smooth, name) for name in series}
  for window in windows.values():
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
      raise ValueError(f"training_curves: smooth must be a positive int; got {window!r}")
  fig, ax = _axes(ax, 4.5, 3.2)
  colors = _colors(list(series), colors)
  positive = []
  for name, values in series.items():
    runs = _runs(values, "training_curves", "losses")
    x = _per(steps, name)
    x = np.arange(runs.shape[1], dtype=np.float64) if x is None else np.asarray(x, np.float64)
    if x.shape != (runs.shape[1],):
      raise ValueError(f"training_curves: steps has {x.size} entries for {runs.shape[1]} losses")
    color = colors[name]
    raw = np.where(runs > 0, runs, np.nan)
    if runs.shape[0] > 1 or windows[name] > 1:
      stride = max(1, x.size // _FAINT_POINTS)
      alpha = max(0.1, 0.5 / math.sqrt(runs.shape[0]))
      for row in raw:
        ax.plot(
          x[::stride], row[::stride], color=color, lw=0.5, alpha=alpha, zorder=1, rasterized=True
        )
    bold = smoothed_median(runs, windows[name])
    bold = np.where(np.isfinite(bold) & (bold > 0), bold, np.nan)
    ax.plot(x, bold, color=color, label=name or None, zorder=3, path_effects=HALO)
    for _, step, loss in diverged_ends(x, runs):
      if np.isfinite(loss) and loss > 0:
        ax.plot([step], [loss], "x", color=color, ms=5, mew=1.2, zorder=4)
    positive += [bold, raw]
  if baseline is not None and np.isfinite(baseline) and baseline > 0:
    ax.axhline(baseline, color="black", ls="--", lw=1.0, label="trivial baseline", zorder=5)
  ax.set_yscale("log")
  limits = loss_limits(
    np.concatenate([p.ravel() for p in positive]) if positive else [], [baseline]
  )
  if limits is not None:
    ax.set_ylim(*limits)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  if legend:
    _legend(ax, loc="best")
  return fig


__all__ = [
  "CELL_COLORS",
  "GATE_QUANTITIES",
  "OKABE_ITO",
  "decay_rates",
  "eigenvalues",
  "gate_statistics",
  "grad_norm_vs_lag",
  "jacobian_norms",
  "log_norms_by_lag",
  "lyapunov_spectrum",
  "median_band",
  "recurrent_blocks",
  "recurrent_spectra",
  "singular_values",
  "smoothed_median",
  "style",
  "trailing_mean",
  "training_curves",
]
