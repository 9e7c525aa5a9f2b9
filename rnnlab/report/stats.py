r"""Small statistics over seeds that every section uses: medians with NaN and inf, crossings.

Every number may be ``nan`` or ``inf`` (a diverged run, a cell without
diagnostics); none of these functions warns on an all-NaN slice.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np


def f64(values: Any) -> np.ndarray:
  return np.asarray(values, dtype=np.float64)


def close(values: np.ndarray, value: float) -> np.ndarray:
  return np.isclose(f64(values), float(value), rtol=1e-6, atol=1e-12)


def matrix(ids: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(unique xs, runs x xs matrix of ys)``: one row per distinct id, ``nan`` where a run lacks an x."""
  _, rows = np.unique(ids, return_inverse=True)
  ux, cols = np.unique(xs, return_inverse=True)
  out = np.full((int(rows.max()) + 1 if rows.size else 0, ux.size), np.nan)
  out[rows.ravel(), cols.ravel()] = f64(ys)
  return ux, out


def nanmedian(values: Any) -> float:
  """The median of the non-NaN values (``inf`` counts); NaN if there are none."""
  values = f64(values).ravel()
  values = values[~np.isnan(values)]
  return float(np.median(values)) if values.size else math.nan


def median_inf(values: Any) -> float:
  """Median with every non-finite value counted as ``+inf`` (a diverged run is worst)."""
  values = f64(values).ravel()
  if not values.size:
    return math.nan
  return float(np.median(np.where(np.isfinite(values), values, np.inf)))


def crossing(x: np.ndarray, y: np.ndarray, level: float = 0.0) -> float | None:
  """The first ``x`` where ``y`` (sorted by ``x``) reaches ``level``, linearly interpolated."""
  order = np.argsort(x)
  x, y = f64(x)[order], f64(y)[order] - level
  keep = np.isfinite(x) & np.isfinite(y)
  x, y = x[keep], y[keep]
  for i in range(x.size):
    if y[i] == 0:
      return float(x[i])
    if i + 1 < x.size and y[i] * y[i + 1] < 0:
      return float(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))
  return None


def pick(values: np.ndarray, preferred: Any = None) -> float | None:
  """``preferred`` if among ``values``, else the most common value (ties: the smallest)."""
  values = f64(values)
  values = values[~np.isnan(values)]
  if not values.size:
    return None
  uniq = np.unique(values)
  with contextlib.suppress(TypeError, ValueError):
    if preferred is not None and np.any(close(uniq, float(preferred))):
      return float(uniq[np.argmax(close(uniq, float(preferred)))])
  counts = [int(np.sum(close(values, u))) for u in uniq]
  return float(uniq[int(np.argmax(counts))])


def censored_median(values: np.ndarray, censored: np.ndarray) -> tuple[float, bool]:
  """The median of horizons some of which are lower bounds, and whether it is one too.

  A censored horizon equals the largest lag, so within one setting it sorts
  last; the median is a lower bound when a middle value is. NaN values (a cell
  without diagnostics) are left out; none left gives ``(nan, False)``.
  """
  values, censored = f64(values), np.asarray(censored, bool)
  keep = ~np.isnan(values)
  values, censored = values[keep], censored[keep]
  if not values.size:
    return math.nan, False
  order = np.lexsort((censored, values))
  values, censored = values[order], censored[order]
  lo, hi = (values.size - 1) // 2, values.size // 2
  return float((values[lo] + values[hi]) / 2), bool(censored[lo] or censored[hi])


__all__ = [
  "censored_median",
  "close",
  "crossing",
  "f64",
  "matrix",
  "median_inf",
  "nanmedian",
  "pick",
]
