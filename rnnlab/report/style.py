r"""The report's look: colours, names, number formats and the axes every figure shares.

Colours are Okabe-Ito (colour-blind safe, from :mod:`rnnlab.plot`): a built-in cell
keeps its colour in every figure (:data:`rnnlab.plot.CELL_COLORS`); the values of
any other grouping axis take the remaining colours in order. Numbers are printed
to three significant digits (:func:`num`); a loss or loss ratio beyond
:math:`[10^{-6}, 10^6]` prints as its bound (:func:`loss`), a hyper-parameter as
written in a config (:func:`g`). Only NumPy, matplotlib (no pyplot) and
:mod:`rnnlab.plot` are used.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from rnnlab import plot as plot_lib

CELL_COLORS = plot_lib.CELL_COLORS
CELL_NAMES = plot_lib.CELL_NAMES
CELL_ORDER = ("elman", "lstm", "gru")
# Colours for the values of a grouping axis that are not built-in cells.
SPARE_COLORS = tuple(c for c in plot_lib.OKABE_ITO if c not in CELL_COLORS.values()) + tuple(
  CELL_COLORS.values()
)
# Line styles and markers for a third axis (e.g. clipping on: solid, off: dashed).
LINE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))

LN2, LN10 = math.log(2.0), math.log(10.0)
HUGE, TINY = 1e6, 1e-6  # losses and loss ratios beyond these print as ">1e6" and "<1e-6"
SAVE_METADATA = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
  """No NumPy floating-point or all-NaN-slice warnings inside (NaN and inf are data here)."""
  with warnings.catch_warnings(), np.errstate(all="ignore"):
    warnings.simplefilter("ignore", RuntimeWarning)
    yield


# --------------------------------------------------------------------------
# Names and numbers.
# --------------------------------------------------------------------------


def cell_name(cell: str) -> str:
  """``"Elman"``, ``"LSTM"``, ``"GRU"``; an import path ``"pkg.mod:factory"`` by its factory."""
  if cell in CELL_NAMES:
    return CELL_NAMES[cell]
  return cell.rpartition(":")[2] or cell


def cell_title(cell: str) -> str:
  """A cell as the overview introduces it: ``LSTM``, ``ugrnn (`pkg.cells:ugrnn`)``."""
  name = cell_name(cell)
  return name if name == cell or cell in CELL_NAMES else f"{name} (`{cell}`)"


def g(x: float) -> str:
  """A hyper-parameter value as written in a config: 1, 0.5, 0.002."""
  return format(float(x), "g")


def num(x: float) -> str:
  """A computed number to three significant digits (no exponent from 1e-3 to 1e6)."""
  if not np.isfinite(x):
    return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
  if 1000 <= abs(x) < HUGE:
    return f"{x:.0f}"
  text = f"{x:.3g}"
  return text.replace("e-0", "e-").replace("e+0", "e+")


def loss(x: float) -> str:
  """A loss or a loss ratio: as :func:`num` within [1e-6, 1e6], ``>1e6`` or ``<1e-6`` beyond.

  A blown-up run's loss (1e9 and more) or a vanishing one says all it has to say
  by its bound; its digits would only hide the table.
  """
  if np.isfinite(x):
    if x > HUGE:
      return ">1e6"
    if x < -HUGE:
      return "<-1e6"
    if 0 < x < TINY:
      return "<1e-6"
  return num(x)


def ratio(x: float) -> str:
  """A median loss ratio where a diverged run counts as ``inf``; NaN is ``n/a``."""
  if x == np.inf:
    return "∞ (most runs diverged)"
  return loss(x) if np.isfinite(x) else "n/a"


def signed(x: float) -> str:
  """A rate with its sign: +0.593, -0.105."""
  return ("+" if np.isfinite(x) and x > 0 else "") + num(x)


def count(n: int, word: str) -> str:
  """``"1 run"``, ``"3 runs"``."""
  return f"{n} {word}{'' if n == 1 else 's'}"


def pct(x: float) -> str:
  """A share as a percentage: 25%, 0.5%; ``n/a`` for NaN."""
  if not np.isfinite(x):
    return "n/a"
  if x == 0 or 100 * abs(x) >= 10:
    return f"{100 * x:.0f}%"
  return f"{100 * x:.2g}%"


def join(items: Sequence[str]) -> str:
  """``"a"``, ``"a and b"``, ``"a, b and c"``."""
  items = list(items)
  if len(items) <= 1:
    return "".join(items)
  return ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------


def rc() -> contextlib.AbstractContextManager:
  """The rc settings every figure is drawn under (those of :mod:`rnnlab.plot`)."""
  return plot_lib.style()


def figure(width: float, height: float) -> Figure:
  """A constrained-layout figure (no pyplot: it renders through Agg and the SVG backend)."""
  return Figure(figsize=(width, height), layout="constrained")


def finish(ax: Any) -> None:
  ax.tick_params(labelsize=plot_lib.RC["xtick.labelsize"])


def no_data(ax: Any, text: str = "no data") -> None:
  ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def figure_legend(fig: Figure, axes: Any) -> None:
  """One legend below the panels, each label once."""
  legend: dict[str, Any] = {}
  for ax in np.ravel(axes):
    for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
      legend.setdefault(label, handle)
  if legend:
    ncol = min(len(legend), 4)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=ncol)


def colors(values: Sequence[Any], cells: bool) -> dict[Any, str]:
  """A colour per value of a grouping axis: a built-in cell its own, others the spare ones."""
  out: dict[Any, str] = {}
  spare = iter(SPARE_COLORS)
  for value in values:
    if cells and value in CELL_COLORS:
      out[value] = CELL_COLORS[value]
  for value in values:
    if value not in out:
      out[value] = next(spare, None) or SPARE_COLORS[len(out) % len(SPARE_COLORS)]
  return out


class Scale:
  """Where the values of an axis go on a figure's x axis, and how it is labelled.

  A numeric axis is drawn at its values: on a log scale (base 2 for integers,
  10 otherwise) when they are all positive and span a factor of 4 or more, else
  linear; a tick at every value when there are at most 12. Other axes (strings,
  bools, a mix) and ``None`` values are drawn at evenly spaced positions with
  their texts as tick labels.
  """

  def __init__(self, values: Sequence[Any], texts: Sequence[str], numeric: bool, label: str):
    self.values, self.texts, self.label = list(values), list(texts), label
    finite = [v for v in self.values if isinstance(v, int | float) and np.isfinite(v)]
    self.numeric = numeric and len(finite) == len(self.values) and bool(self.values)
    self.log = False
    if self.numeric:
      lo, hi = min(finite), max(finite)
      self.log = lo > 0 and hi / lo >= 4
      self.base = 2 if all(float(v).is_integer() for v in finite) else 10

  def positions(self, values: Sequence[Any]) -> np.ndarray:
    if self.numeric:
      return np.array([float(v) for v in values], np.float64)
    return np.array([float(self.values.index(v)) for v in values], np.float64)

  def nudge(self, x: np.ndarray, k: int, n: int) -> np.ndarray:
    """``x`` moved a little for the ``k``-th of ``n`` series, so equal points stay visible."""
    offset = k - (n - 1) / 2
    if self.log:
      return x * 2 ** (0.04 * offset)
    span = np.diff(np.unique(self.positions(self.values)))
    step = float(span.min()) if span.size else 1.0
    return x + 0.04 * step * offset

  def apply(self, ax: Any) -> None:
    ax.set_xlabel(self.label)
    xs = self.positions(self.values)
    if not xs.size:
      return
    if self.log:
      ax.set_xscale("log", base=self.base)
      ax.set_xlim(xs.min() / 1.35, xs.max() * 1.35)
    else:
      pad = 0.5 if not self.numeric or xs.size < 2 else 0.08 * float(xs.max() - xs.min())
      ax.set_xlim(xs.min() - max(pad, 1e-12), xs.max() + max(pad, 1e-12))
    if len(xs) <= 12:
      ax.xaxis.set_major_locator(ticker.FixedLocator(xs))
      ax.xaxis.set_major_formatter(ticker.FixedFormatter(self.texts))
      ax.xaxis.set_minor_locator(ticker.NullLocator())


__all__ = [
  "CELL_COLORS",
  "CELL_NAMES",
  "CELL_ORDER",
  "LINE_STYLES",
  "SAVE_METADATA",
  "SPARE_COLORS",
  "Scale",
  "cell_name",
  "cell_title",
  "colors",
  "count",
  "figure",
  "figure_legend",
  "finish",
  "g",
  "join",
  "loss",
  "no_data",
  "num",
  "pct",
  "quiet",
  "ratio",
  "rc",
  "signed",
]
