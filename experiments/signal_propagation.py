r"""Signal propagation at initialisation: the curse of memory (Zucchet & Orvieto 2024).

    python -m experiments.signal_propagation --workdir=runs/signal_propagation      # default
    python -m experiments.signal_propagation \
      --config=experiments/configs/signal_propagation.py:quick --workdir=/tmp/sp

Writes ``diagonal.csv``, ``cells.csv``, ``figures/signal_propagation.png`` and
``report.md`` into the workdir (with ``config.json`` and ``environment.json``,
the settings that made them). Nothing is trained; the same seed gives the same
bytes.

**Diagonal recurrence.** ``h_{t+1} = lam h_t + c x_t`` from ``h_0 = 0``, ``x_t``
white Gaussian noise of unit variance. The sensitivity ``S = E[|dh_t/dlam|^2]``
and the forward variance ``V = E[|h_t|^2]`` in the stationary limit:

* plain, ``c = 1``: ``V = 1/(1-lam^2)``, ``S = (1+lam^2)/(1-lam^2)^3``;
* normalised, ``c = gamma = sqrt(1-lam^2)`` held fixed when differentiating (the
  LRU, where gamma is a parameter of its own): ``V = 1``, ``S = (1+lam^2)/(1-lam^2)^2``;
* normalised, ``c = gamma(lam)`` differentiated through: ``V = 1``,
  ``S = 1/(1-lam^2)^2`` (the terms ``gamma'^2 V_u + 2 gamma gamma' C + gamma^2 S_u``
  with ``V_u = 1/(1-q)``, ``C = lam/(1-q)^2``, ``S_u = (1+q)/(1-q)^3``, ``q = lam^2``);
* complex ``lam = r e^{i phi}``, ``c = 1``, real input, ``S = E|dh/dr|^2``: ``V = 1/(1-r^2)``,
  ``S = (1+r^2)/(1-r^2)^3`` whatever the phase (white input has no cross-time
  correlation for the phase to act on).

After ``t`` steps the exact expectations are finite sums (:func:`expected`); the
Monte-Carlo estimate averages the last ``window`` steps of every sequence and is
compared with both.

**Cells at initialisation.** ``S = ||dh_t/dW_hh||_F^2 / P``: the squared
sensitivity of the hidden state (all H units) to the recurrent weights, *per
entry* of ``W_hh`` (P entries), so that cells of different sizes compare. It is
estimated with one random Gaussian tangent ``V`` per sequence
(``E_V ||J V||^2 = ||J||_F^2``), in forward mode. ``|lam|`` is

* Elman (linear or tanh), ``W_hh = g Q`` with Q orthogonal: ``|lam| = g``, the
  modulus of every eigenvalue of ``W_hh``;
* LSTM: the forget gate's value at zero input and state, ``sigma(b_f) = |lam|``
  (``forget_bias = logit(|lam|)``), other weights at their defaults;
* GRU: the update gate's value at zero input and state, ``sigma(b_iz) = |lam|``
  (z keeps the state in rnnlab's GRU), other weights at their defaults.

Exit status, each failure one line on stderr starting ``signal_propagation: error:``:
0 done (or ``--help``); 2 a bad flag, config value, or a workdir that is not a
writable folder, is in use by another launch, or holds results of other
settings (``--overwrite`` discards them); 3 a read or write failed mid-run;
130 interrupted; 1 a bug (with its traceback).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from typing import Any, NoReturn

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from experiments import cli

PROG = "signal_propagation"
_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "signal_propagation.py")
EXIT_USAGE = 2  # a bad flag or config, an unusable, busy or foreign workdir: before any work
EXIT_IO = 3  # a read or write failed mid-run
VARIANTS = ("plain", "gamma_fixed", "gamma_through", "complex")
TABLES = ("diagonal.csv", "cells.csv")
FIGURE = os.path.join("figures", "signal_propagation.png")
OUTPUTS = (*TABLES, FIGURE, "report.md")

_FLAGS = flags.FLAGS
_ARGV: list[str] = []
_HOLDERS: dict = {}  # the flags' holders, by name, once define_flags has run


def define_flags(flag_values: flags.FlagValues = _FLAGS) -> None:
  """Defines the command's flags: at launch, not at import (experiments.run, imported in the
  same test process, defines its own ``--config``)."""
  _HOLDERS["config"] = config_flags.DEFINE_config_file(
    "config",
    _DEFAULT_CONFIG,
    "Config file, optionally with ':<preset>' (quick or default), e.g. "
    "experiments/configs/signal_propagation.py:quick. Fields can be overridden with "
    "--config.<field>=<value>.",
    flag_values=flag_values,
    lock_config=True,
    sys_argv=_ARGV,
  )
  _HOLDERS["workdir"] = flags.DEFINE_string(
    "workdir",
    "runs/signal_propagation",
    "Folder for config.json, the tables, the figure and report.md; created if missing.",
    flag_values=flag_values,
  )
  _HOLDERS["overwrite"] = flags.DEFINE_bool(
    "overwrite",
    False,
    "Replace the results of other settings in --workdir (else such a workdir is refused).",
    flag_values=flag_values,
  )


# --------------------------------------------------------------------------
# Closed forms.
# --------------------------------------------------------------------------


def closed_form(lam: Any, variant: str = "plain") -> tuple[np.ndarray, np.ndarray]:
  """Stationary ``(S, V)``: sensitivity ``E|dh/d|lam||^2`` and variance ``E|h|^2`` (module doc)."""
  q = np.square(np.abs(np.asarray(lam, np.float64)))
  if variant in ("plain", "complex"):
    return (1 + q) / (1 - q) ** 3, 1 / (1 - q)
  if variant == "gamma_fixed":
    return (1 + q) / (1 - q) ** 2, np.ones_like(q)
  if variant == "gamma_through":
    return 1 / (1 - q) ** 2, np.ones_like(q)
  raise ValueError(f"closed_form: variant={variant!r}; expected one of {VARIANTS}")


def expected(lam: float, variant: str, steps: Any) -> tuple[np.ndarray, np.ndarray]:
  """Exact ``(S, V)`` after each of ``steps`` steps from ``h_0 = 0`` (finite sums, float64).

  ``h_t = c sum_{j<t} lam^j x_{t-1-j}``, so with ``u = sum lam^j x``:
  ``E u^2 = sum_{j<t} q^j``, ``E u u' = sum_{j<t} j lam^{2j-1}``,
  ``E u'^2 = sum_{j<t} j^2 lam^{2(j-1)}`` (``q = |lam|^2``).
  """
  steps = np.asarray(steps, np.int64)
  r = abs(float(lam))
  j = np.arange(int(steps.max()), dtype=np.float64)
  q = r * r
  with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
    qj = q**j
    s0 = np.cumsum(qj)
    s1 = np.cumsum(np.where(j > 0, j * r ** np.maximum(2 * j - 1, 0), 0.0))
    s2 = np.cumsum(np.where(j > 0, j * j * q ** np.maximum(j - 1, 0), 0.0))
  s0, s1, s2 = s0[steps - 1], s1[steps - 1], s2[steps - 1]
  if variant in ("plain", "complex"):
    return s2, s0
  gamma2 = 1 - q
  if variant == "gamma_fixed":
    return gamma2 * s2, gamma2 * s0
  if variant == "gamma_through":
    # c = gamma(lam), c' = -lam / gamma: c'^2 s0 + 2 c c' s1 + c^2 s2.
    dgamma2 = q / gamma2 if gamma2 > 0 else np.inf
    return dgamma2 * s0 - 2 * r * s1 + gamma2 * s2, gamma2 * s0
  raise ValueError(f"expected: variant={variant!r}; expected one of {VARIANTS}")


# --------------------------------------------------------------------------
# Measurements (JAX).
# --------------------------------------------------------------------------


def _window_stats(total_s, total_v, window: int) -> dict[str, np.ndarray]:
  """Per-sequence window means ``(N, L)`` -> mean and standard error over sequences."""
  s = np.asarray(total_s, np.float64) / window
  v = np.asarray(total_v, np.float64) / window
  n = s.shape[0]
  return {
    "sensitivity": s.mean(0),
    "sensitivity_se": s.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.full(s.shape[1], np.nan),
    "variance": v.mean(0),
  }


def measure_diagonal(lams, variant: str, T: int, window: int, sequences: int, phase: float, key):
  """Monte-Carlo ``S`` and ``V`` of the diagonal recurrence, one unit per ``|lam|``.

  Every unit reads the same input sequence (common random numbers: the curve
  over ``|lam|`` is smooth); the sequences are independent. The real variants run
  :func:`rnnlab.cells.diagonal`'s step with ``lam`` the unit's eigenvalue and
  ``w_ih`` the row of input scales ``c``; ``dh/dlam`` is one forward-mode tangent
  (``dh_i/dlam_j = 0`` for ``i != j``).
  """
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from rnnlab import cells  # noqa: PLC0415

  lam_L = jnp.asarray(lams, jnp.float32)
  L = lam_L.shape[0]
  cell = cells.diagonal(L)

  def params(lam):
    if variant == "gamma_fixed":
      scale = jax.lax.stop_gradient(jnp.sqrt(1 - lam**2))
    elif variant == "gamma_through":
      scale = jnp.sqrt(1 - lam**2)
    else:
      scale = jnp.ones_like(lam)
    return cells.DiagonalParams(lam=lam, w_ih=scale[None, :], b=jnp.zeros_like(lam))

  if variant == "complex":
    rotation = jnp.exp(1j * jnp.asarray(phase, jnp.float32)).astype(jnp.complex64)

    def step(lam, h, x_Nx1):
      return (lam * rotation) * h + x_Nx1
  else:

    def step(lam, h, x_Nx1):
      return cell.step(params(lam), h, x_Nx1)[0]

  dtype = jnp.complex64 if variant == "complex" else jnp.float32

  @jax.jit
  def run(key):
    def body(carry, t):
      h, dh, acc_s, acc_v = carry
      x_Nx1 = jax.random.normal(jax.random.fold_in(key, t), (sequences, 1), jnp.float32)
      h, dh = jax.jvp(lambda lam, h: step(lam, h, x_Nx1), (lam_L, h), (jnp.ones_like(lam_L), dh))
      inside = (t >= T - window).astype(jnp.float32)
      acc_s = acc_s + inside * jnp.abs(dh) ** 2
      acc_v = acc_v + inside * jnp.abs(h) ** 2
      return (h, dh, acc_s, acc_v), None

    zeros = jnp.zeros((sequences, L), dtype)
    acc = jnp.zeros((sequences, L), jnp.float32)
    (_, _, acc_s, acc_v), _ = jax.lax.scan(body, (zeros, zeros, acc, acc), jnp.arange(T))
    return acc_s, acc_v

  return _window_stats(*jax.device_get(run(key)), window)


def _logit(p: float) -> float:
  return math.log(p) - math.log1p(-p) if p > 0 else -30.0


def cell_at(name: str, lam: float, hidden_size: int):
  """The cell ``name`` and how to set its ``|lam|`` (module doc): ``(cell, set_lam(params))``."""
  from rnnlab import cells  # noqa: PLC0415

  H = hidden_size
  if name in ("elman_linear", "elman_tanh"):
    activation = "linear" if name == "elman_linear" else "tanh"
    return cells.elman(H, activation, gain=lam), lambda p: p
  if name == "lstm":
    return cells.lstm(H, forget_bias=_logit(lam)), lambda p: p
  if name == "gru":

    def set_update_gate(p):  # z = sigma(b_iz + b_hz): b_iz = logit(lam), b_hz = 0
      b_ih = p.b_ih.at[H : 2 * H].set(_logit(lam))
      return p._replace(b_ih=b_ih, b_hh=p.b_hh.at[H : 2 * H].set(0.0))

    return cells.gru(H), set_update_gate
  raise ValueError(f"unknown cell {name!r}; expected one of elman_linear, elman_tanh, lstm, gru")


def measure_cell(name: str, lams, hidden_size: int, T: int, window: int, sequences: int, key):
  """Monte-Carlo ``||dh_t/dW_hh||_F^2 / P`` and ``mean_i h_{t,i}^2`` of a cell at init, per |lam|.

  Every ``|lam|`` uses the same initialisation key, input sequences and tangents:
  only the memory knob differs (the step functions are the same; the params are
  stacked over ``|lam|`` and vmapped). Also returns, for the gated cells, the
  mean gate value (forget f or update z) over the window.
  """
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  k_init, k_x, k_v = jax.random.split(key, 3)
  H = hidden_size
  per_lam = []
  for lam in lams:
    cell, set_lam = cell_at(name, float(lam), H)
    per_lam.append(set_lam(cell.init(k_init, H)))
  params_L = jax.tree.map(lambda *a: jnp.stack(a), *per_lam)
  shape = per_lam[0].w_hh.shape
  P = int(np.prod(shape))
  V_NxHxG = jax.random.normal(k_v, (sequences, *shape), jnp.float32)

  def gate(params, carry, x):
    if name == "lstm":
      a = x @ params.w_ih + carry.h @ params.w_hh + params.b
      return jax.nn.sigmoid(a[..., H : 2 * H])
    if name == "gru":
      a = x @ params.w_ih[:, H : 2 * H] + params.b_ih[H : 2 * H]
      return jax.nn.sigmoid(a + carry @ params.w_hh[:, H : 2 * H] + params.b_hh[H : 2 * H])
    return jnp.zeros(())

  def one(params, seq, V):
    def body(acc, t):
      carry, dcarry, acc_s, acc_v, acc_g = acc
      x = jax.random.normal(jax.random.fold_in(jax.random.fold_in(k_x, seq), t), (H,))

      def f(w_hh, carry):
        return cell.step(params._replace(w_hh=w_hh), carry, x)

      (new, y), (dnew, dy) = jax.jvp(f, (params.w_hh, carry), (V, dcarry))
      inside = (t >= T - window).astype(jnp.float32)
      acc_s = acc_s + inside * jnp.sum(dy**2) / P
      acc_v = acc_v + inside * jnp.mean(y**2)
      acc_g = acc_g + inside * jnp.mean(gate(params, carry, x))
      return (new, dnew, acc_s, acc_v, acc_g), None

    carry0 = cell.initial_carry(params)
    dcarry0 = jax.tree.map(jnp.zeros_like, carry0)
    z = jnp.zeros((), jnp.float32)
    (_, _, s, v, g), _ = jax.lax.scan(body, (carry0, dcarry0, z, z, z), jnp.arange(T))
    return s, v, g

  per_sequence = jax.vmap(one, in_axes=(None, 0, 0))
  run = jax.jit(jax.vmap(per_sequence, in_axes=(0, None, None)))
  s_LxN, v_LxN, g_LxN = (
    np.asarray(a, np.float64) for a in run(params_L, jnp.arange(sequences), V_NxHxG)
  )
  stats = _window_stats(s_LxN.T, v_LxN.T, window)
  stats["gate"] = g_LxN.mean(1) / window
  return stats


# --------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------


def _f(x: float) -> str:
  """A number in a table: 7 significant digits, ``nan``/``inf`` spelled out (deterministic)."""
  x = float(x)
  if math.isnan(x):
    return "nan"
  if math.isinf(x):
    return "inf" if x > 0 else "-inf"
  return format(x, ".7g")


DIAGONAL_COLUMNS = (
  "variant",
  "lam",
  "T",
  "window",
  "sequences",
  "sensitivity",
  "sensitivity_se",
  "sensitivity_expected",
  "sensitivity_closed_form",
  "z",
  "rel_error_expected",
  "rel_error_closed_form",
  "variance",
  "variance_expected",
  "variance_closed_form",
)
CELL_COLUMNS = (
  "cell",
  "lam",
  "hidden_size",
  "params",
  "T",
  "window",
  "sequences",
  "sensitivity",
  "sensitivity_se",
  "variance",
  "gate",
  "diagonal_closed_form",
)


def diagonal_rows(config, key) -> list[dict[str, str]]:
  """The rows of ``diagonal.csv``: every variant at every ``|lam|`` of the grid."""
  import jax  # noqa: PLC0415

  d = config.diagonal
  steps = np.arange(d.T - d.window + 1, d.T + 1)
  rows = []
  for k, variant in enumerate(VARIANTS):
    m = measure_diagonal(d.lams, variant, d.T, d.window, d.sequences, d.phase, key)
    del k  # every variant reads the same inputs
    for i, lam in enumerate(d.lams):
      s_exp, v_exp = (float(np.mean(a)) for a in expected(lam, variant, steps))
      s_cf, v_cf = (float(a) for a in closed_form(lam, variant))
      s, se = float(m["sensitivity"][i]), float(m["sensitivity_se"][i])
      rows.append(
        {
          "variant": variant,
          "lam": _f(lam),
          "T": str(d.T),
          "window": str(d.window),
          "sequences": str(d.sequences),
          "sensitivity": _f(s),
          "sensitivity_se": _f(se),
          "sensitivity_expected": _f(s_exp),
          "sensitivity_closed_form": _f(s_cf),
          "z": _f((s - s_exp) / se if se > 0 else np.nan),
          "rel_error_expected": _f(s / s_exp - 1),
          "rel_error_closed_form": _f(s / s_cf - 1),
          "variance": _f(m["variance"][i]),
          "variance_expected": _f(v_exp),
          "variance_closed_form": _f(v_cf),
        }
      )
  jax.clear_caches()
  return rows


def cell_rows(config, key) -> list[dict[str, str]]:
  """The rows of ``cells.csv``: every cell at every ``|lam|`` of its grid."""
  import jax  # noqa: PLC0415

  c = config.cells
  rows = []
  for k, name in enumerate(c.names):
    m = measure_cell(
      name, c.lams, c.hidden_size, c.T, c.window, c.sequences, jax.random.fold_in(key, k)
    )
    cell, set_lam = cell_at(name, 0.5, c.hidden_size)
    P = int(np.prod(set_lam(cell.init(jax.random.key(0), c.hidden_size)).w_hh.shape))
    for i, lam in enumerate(c.lams):
      rows.append(
        {
          "cell": name,
          "lam": _f(lam),
          "hidden_size": str(c.hidden_size),
          "params": str(P),
          "T": str(c.T),
          "window": str(c.window),
          "sequences": str(c.sequences),
          "sensitivity": _f(m["sensitivity"][i]),
          "sensitivity_se": _f(m["sensitivity_se"][i]),
          "variance": _f(m["variance"][i]),
          "gate": _f(m["gate"][i]) if name in ("lstm", "gru") else "",
          "diagonal_closed_form": _f(closed_form(lam)[0]),
        }
      )
  return rows


def csv_text(rows: list[dict[str, str]], columns) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def read_rows(path: str) -> list[dict[str, str]]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


# --------------------------------------------------------------------------
# Figure and report.
# --------------------------------------------------------------------------

_VARIANT_STYLE = {  # label, colour, marker
  "plain": ("plain: $(1+\\lambda^2)/(1-\\lambda^2)^3$", "#D55E00", "o"),
  "gamma_fixed": ("$\\gamma$ held fixed: $(1+\\lambda^2)/(1-\\lambda^2)^2$", "#0072B2", "s"),
  "gamma_through": ("$\\gamma(\\lambda)$ differentiated: $1/(1-\\lambda^2)^2$", "#009E73", "^"),
  "complex": ("complex $\\lambda$ (measured at $|\\lambda|$)", "#000000", "x"),
}
_CELL_STYLE = {
  "elman_linear": ("Elman, linear ($|\\lambda| = g$)", "#D55E00", "o", "-"),
  "elman_tanh": ("Elman, tanh ($|\\lambda| = g$)", "#D55E00", "s", "--"),
  "lstm": ("LSTM ($|\\lambda| = \\sigma(b_f)$)", "#0072B2", "^", "-"),
  "gru": ("GRU ($|\\lambda| = \\sigma(b_z)$)", "#009E73", "D", "-"),
}


def _memory_axis(ax, lams) -> None:
  """x = 1/(1-|lam|) on a log axis, ticks labelled with |lam|."""
  from matplotlib import ticker  # noqa: PLC0415

  ax.set_xscale("log")
  top = max(float(v) for v in lams)
  low = min(float(v) for v in lams)
  ticks = [t for t in (0.0, 0.5, 0.9, 0.99, 0.999) if low - 1e-9 <= t <= top + 1e-9]
  ax.xaxis.set_major_locator(ticker.FixedLocator([1 / (1 - t) for t in ticks]))
  ax.xaxis.set_major_formatter(ticker.FixedFormatter([format(t, "g") for t in ticks]))
  ax.xaxis.set_minor_locator(ticker.NullLocator())
  ax.set_xlabel("$|\\lambda|$  (axis: memory $1/(1-|\\lambda|)$, log)")


def figure(diagonal: list[dict[str, str]], cell_table: list[dict[str, str]]):
  """Three panels: forward variance, diagonal sensitivity vs closed form, cells at init."""
  from rnnlab.report import style  # noqa: PLC0415

  with style.rc():
    fig = style.figure(12.0, 3.9)
    axes = fig.subplots(1, 3)
    ax_v, ax_s, ax_c = axes
    for variant in VARIANTS:
      rows = [r for r in diagonal if r["variant"] == variant]
      lam = np.array([float(r["lam"]) for r in rows])
      x = 1 / (1 - lam)
      label, color, marker = _VARIANT_STYLE[variant]
      fine = np.linspace(0, lam.max(), 400)
      if variant != "complex":
        s_cf, v_cf = closed_form(fine, variant)
        ax_s.plot(1 / (1 - fine), s_cf, color=color, lw=1.4, label=label)
        if variant != "gamma_through":
          v_label = "plain: $1/(1-\\lambda^2)$" if variant == "plain" else "normalised: 1"
          ax_v.plot(1 / (1 - fine), v_cf, color=color, lw=1.4, label=v_label)
      s = np.array([float(r["sensitivity"]) for r in rows])
      v = np.array([float(r["variance"]) for r in rows])
      points = dict(color=color, marker=marker, ls="none", ms=4.5, mfc="none", mew=1.1)
      ax_s.plot(x, s, label=label if variant == "complex" else None, **points)
      if variant in ("plain", "gamma_fixed"):
        ax_v.plot(x, v, **points)
    for name in dict.fromkeys(r["cell"] for r in cell_table):
      rows = [r for r in cell_table if r["cell"] == name]
      lam = np.array([float(r["lam"]) for r in rows])
      s = np.array([float(r["sensitivity"]) for r in rows])
      se = np.array([float(r["sensitivity_se"]) for r in rows])
      label, color, marker, ls = _CELL_STYLE[name]
      ax_c.errorbar(1 / (1 - lam), s, yerr=se, color=color, marker=marker, ls=ls, ms=4, label=label)
    if cell_table:
      lam = np.array([float(r["lam"]) for r in cell_table])
      fine = np.linspace(lam.min(), lam.max(), 200)
      ax_c.plot(
        1 / (1 - fine),
        closed_form(fine)[0],
        color="0.6",
        lw=1.0,
        zorder=-1,
        label="diagonal, plain (reference)",
      )
    ax_v.set_title("Forward variance $E[h_t^2]$ (diagonal)")
    ax_s.set_title("Sensitivity $E[(\\partial h_t/\\partial\\lambda)^2]$ (diagonal)")
    ax_c.set_title("Cells at init: $\\|\\partial h_t/\\partial W_{hh}\\|_F^2$ per entry")
    for ax, lams in (
      (ax_v, [r["lam"] for r in diagonal]),
      (ax_s, [r["lam"] for r in diagonal]),
      (ax_c, [r["lam"] for r in cell_table] or ["0.9"]),
    ):
      _memory_axis(ax, lams)
      ax.set_yscale("log")
      ax.legend(loc="upper left", fontsize=7)
      style.finish(ax)
    ax_s.text(
      0.98,
      0.03,
      "lines: closed form; markers: Monte Carlo",
      transform=ax_s.transAxes,
      ha="right",
      va="bottom",
      fontsize=7,
      color="0.35",
    )
  return fig


def _agreement(diagonal: list[dict[str, str]], variant: str) -> dict[str, float]:
  rows = [r for r in diagonal if r["variant"] == variant]
  rel_t = [abs(float(r["rel_error_expected"])) for r in rows]
  rel_c = [abs(float(r["rel_error_closed_form"])) for r in rows]
  z = [abs(float(r["z"])) for r in rows if r["z"] != "nan"]
  return {"rel_expected": max(rel_t), "rel_closed": max(rel_c), "z": max(z) if z else np.nan}


def _slope(lam: np.ndarray, s: np.ndarray) -> float:
  """The log-log slope of S against the memory 1/(1-lam) over the upper half of the grid."""
  keep = lam >= np.median(lam)
  if keep.sum() < 2 or np.any(s[keep] <= 0):
    return float("nan")
  return float(np.polyfit(np.log(1 / (1 - lam[keep])), np.log(s[keep]), 1)[0])


# A cell estimate whose standard error exceeds this share of its mean is flagged heavy-tailed.
HEAVY_TAIL = 0.25


def report(config, diagonal, cell_table, seconds: float) -> str:
  """``report.md``: what was measured, the closed forms, the agreement in numbers."""
  from rnnlab.report import style  # noqa: PLC0415

  d, c = config.diagonal, config.cells
  top = max(d.lams)
  md = [
    "# Signal propagation: the curse of memory (Zucchet & Orvieto 2024)",
    "",
    f"Preset `{config.preset}`, seed {config.seed}, {seconds:.0f} s. Nothing is trained: every "
    "number is a Monte-Carlo average over white-noise input sequences at initialisation.",
    "",
    "## What is measured",
    "",
    "The diagonal linear recurrence $h_{t+1} = \\lambda h_t + c\\,x_t$, $h_0 = 0$, with "
    "$x_t \\sim N(0, 1)$ i.i.d., for "
    f"{len(d.lams)} values of $|\\lambda|$ from {style.g(min(d.lams))} to {style.g(top)} "
    f"(memory $1/(1-|\\lambda|)$ up to {1 / (1 - top):.0f} steps). Each estimate averages "
    f"{d.sequences} independent sequences of T = {d.T} steps and, in each, the last "
    f"{d.window} steps; its standard error is over sequences. The sensitivity "
    "$S = E[|\\partial h_t/\\partial|\\lambda||^2]$ is one forward-mode tangent; the "
    "forward variance is $V = E[|h_t|^2]$. Four variants:",
    "",
    "| variant | input scale $c$ | stationary $S$ | stationary $V$ |",
    "|---|---|---|---|",
    "| plain | 1 | $(1+\\lambda^2)/(1-\\lambda^2)^3$ | $1/(1-\\lambda^2)$ |",
    "| gamma_fixed | $\\gamma = \\sqrt{1-\\lambda^2}$, held fixed when differentiating "
    "(LRU: $\\gamma$ is its own parameter) | $(1+\\lambda^2)/(1-\\lambda^2)^2$ | 1 |",
    "| gamma_through | $\\gamma(\\lambda) = \\sqrt{1-\\lambda^2}$, differentiated through | "
    "$1/(1-\\lambda^2)^2$ | 1 |",
    f"| complex | 1, $\\lambda = |\\lambda| e^{{i\\varphi}}$, $\\varphi$ = {style.g(d.phase)} rad, "
    "real input | $(1+|\\lambda|^2)/(1-|\\lambda|^2)^3$, whatever $\\varphi$ | "
    "$1/(1-|\\lambda|^2)$ |",
    "",
    "Derivation: $h_t = c\\,u_t$ with $u_t = \\sum_j \\lambda^j x_{t-1-j}$, so "
    "$E[u^2] = \\sum_j q^j$, $E[u u'] = \\sum_j j \\lambda^{2j-1}$ and "
    "$E[u'^2] = \\sum_j j^2 q^{j-1}$ ($q = |\\lambda|^2$), which tend to $1/(1-q)$, "
    "$\\lambda/(1-q)^2$ and $(1+q)/(1-q)^3$. With $\\gamma$ differentiated, "
    "$S = \\gamma'^2 E[u^2] + 2\\gamma\\gamma' E[uu'] + \\gamma^2 E[u'^2]$ with "
    "$\\gamma' = -\\lambda/\\gamma$, which sums to $1/(1-q)^2$. For complex $\\lambda$ and white "
    "input the cross-time terms vanish, so the phase drops out. The finite-T sums "
    "(`sensitivity_expected`) are what the estimate targets exactly; the stationary limits "
    "(`sensitivity_closed_form`) differ from them by the transient $O(q^T)$.",
    "",
    "## Agreement with the closed forms",
    "",
    "| variant | max rel. error vs finite-T | max rel. error vs stationary | max abs z-score |",
    "|---|---|---|---|",
  ]
  for variant in VARIANTS:
    a = _agreement(diagonal, variant)
    md.append(
      f"| {variant} | {style.pct(a['rel_expected'])} | {style.pct(a['rel_closed'])} | "
      f"{style.num(a['z'])} |"
    )
  plain = [r for r in diagonal if r["variant"] == "plain"]
  hi = plain[-1]
  md += [
    "",
    f"(z-score: (measured - finite-T expectation) / standard error, over the {len(d.lams)} values "
    "of $|\\lambda|$ per variant; |z| below about 3 is sampling noise.) At "
    f"$|\\lambda|$ = {hi['lam']} the plain sensitivity is {style.num(float(hi['sensitivity']))} "
    f"(closed form {style.num(float(hi['sensitivity_closed_form']))}) while the gradient "
    f"through time $\\partial h_t/\\partial h_k = \\lambda^{{t-k}}$ never exceeds 1: the curse "
    "of memory. Normalising the input keeps the forward variance at 1 and lowers the "
    "sensitivity's growth from $(1-\\lambda)^{-3}$ to $(1-\\lambda)^{-2}$, without removing it.",
    "",
    "![Signal propagation](figures/signal_propagation.png)",
    "",
  ]
  if cell_table:
    names = list(dict.fromkeys(r["cell"] for r in cell_table))
    lams = list(dict.fromkeys(r["lam"] for r in cell_table))
    P = {r["cell"]: r["params"] for r in cell_table}
    md += [
      "## Elman, LSTM and GRU at initialisation",
      "",
      f"H = {c.hidden_size} units, input size H, $x_t \\sim N(0, I)$, {c.sequences} sequences of "
      f"T = {c.T} steps, the last {c.window} averaged. The sensitivity is "
      "$\\|\\partial h_t/\\partial W_{hh}\\|_F^2 / P$: the squared derivative of the whole "
      "hidden state with respect to the recurrent weights, divided by the number P of entries "
      "of $W_{hh}$ (per entry, so that cells of different sizes compare; for the diagonal "
      "recurrence, P = 1 per unit, it is the quantity above). It is estimated with one random "
      "Gaussian tangent per sequence ($E_v \\|J v\\|^2 = \\|J\\|_F^2$). Every $|\\lambda|$ "
      "shares the initialisation key, the inputs and the tangents. $|\\lambda|$ is:",
      "",
      "* Elman (linear or tanh), $W_{hh} = g Q$, Q orthogonal: $|\\lambda| = g$, the modulus of "
      "every eigenvalue of $W_{hh}$;",
      "* LSTM: the forget gate at zero input and state, $\\sigma(b_f) = |\\lambda|$ "
      "(`forget_bias = logit(|λ|)`), the other weights at rnnlab's defaults;",
      "* GRU: the update gate at zero input and state, $\\sigma(b_{iz}) = |\\lambda|$ "
      "($b_{hz} = 0$; z keeps the state), the other weights at rnnlab's defaults.",
      "",
      "The `gate` column of `cells.csv` is the measured mean gate over the window.",
      "",
      "| $|\\lambda|$ | " + " | ".join(f"{n} (P = {P[n]})" for n in names) + " |",
      "|---" * (len(names) + 1) + "|",
    ]
    flagged = 0
    for lam in lams:
      cells_ = []
      for n in names:
        r = next(r for r in cell_table if r["cell"] == n and r["lam"] == lam)
        mean, se = float(r["sensitivity"]), float(r["sensitivity_se"])
        flag = " †" if se > HEAVY_TAIL * mean else ""
        flagged += bool(flag)
        cells_.append(f"{style.num(mean)} ± {style.num(se)}{flag}")
      md.append(f"| {lam} | " + " | ".join(cells_) + " |")
    slopes = []
    for n in names:
      rows = [r for r in cell_table if r["cell"] == n]
      lam = np.array([float(r["lam"]) for r in rows])
      s = np.array([float(r["sensitivity"]) for r in rows])
      slopes.append(f"{n} {style.signed(_slope(lam, s))}")
    ref = _slope(
      np.array([float(x) for x in lams]), closed_form(np.array([float(x) for x in lams]))[0]
    )
    md += [
      "",
      "Log-log slope of the sensitivity against the memory $1/(1-|\\lambda|)$ over the upper half "
      f"of the grid: {style.join(slopes)} (the plain diagonal closed form: {style.signed(ref)}, "
      "3 in the limit).",
      "",
    ]
    if flagged:
      md[-1:-1] = [
        "",
        f"† {flagged} estimate(s) with a standard error above {HEAVY_TAIL:.0%} of the mean: "
        "heavy-tailed, a few sequences dominate the average, so the value is unstable (more "
        "sequences need not narrow it: the distribution may have no finite variance). Read them "
        "as large and growing, not as values; slopes through them are indicative only.",
      ]
  md += [
    "## Reproduce",
    "",
    "```",
    "python -m experiments.signal_propagation "
    f"--config=experiments/configs/signal_propagation.py:{config.preset} --workdir=<dir>",
    "```",
    "",
    "Tables: `diagonal.csv` (one row per variant and $|\\lambda|$) and `cells.csv` (one row per "
    "cell and $|\\lambda|$).",
  ]
  return "\n".join(md) + "\n"


# --------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------


def check(config) -> None:
  """Refuses settings that cannot run, with one line (ValueError)."""
  for section in ("diagonal", "cells"):
    s = config[section]
    lams = tuple(s.lams)
    if not lams or not all(isinstance(v, int | float) and 0 <= v < 1 for v in lams):
      raise ValueError(f"{section}.lams must be a non-empty tuple of values in [0, 1); got {lams}")
    if not (s.T >= 1 and 1 <= s.window <= s.T and s.sequences >= 2):
      raise ValueError(
        f"{section}: need T >= 1, 1 <= window <= T and sequences >= 2; got T={s.T}, "
        f"window={s.window}, sequences={s.sequences}"
      )
  bad = [n for n in config.cells.names if n not in _CELL_STYLE]
  if bad:
    raise ValueError(f"cells.names: unknown {bad}; expected among {tuple(_CELL_STYLE)}")
  if config.cells.hidden_size < 1:
    raise ValueError(f"cells.hidden_size={config.cells.hidden_size}; expected an int >= 1")
  if config.dpi < 10:
    raise ValueError(f"dpi={config.dpi}; expected >= 10")


def _fail(message: str, status: int) -> NoReturn:
  print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
  return cli.parse_flags(argv, _FLAGS, _ARGV, _DEFAULT_CONFIG, prog=PROG)


def run(config, workdir: str, overwrite: bool = False) -> list[str]:
  """Measures, then writes the tables, the figure and the report into ``workdir``; their paths.

  The caller holds the workdir's lock. Each file is written through a temporary
  file and a rename, so a killed run leaves the previous file or none.
  """
  import jax  # noqa: PLC0415

  from rnnlab import workdir as workdir_lib  # noqa: PLC0415
  from rnnlab.report import _save_atomic  # noqa: PLC0415

  start = time.perf_counter()
  settings = config.to_dict()
  settings["cells"]["names"] = list(settings["cells"]["names"])
  settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
  env = workdir_lib.environment(1)
  if overwrite:
    for name in (*OUTPUTS, workdir_lib.CONFIG, workdir_lib.ENVIRONMENT):
      if os.path.exists(os.path.join(workdir, name)):
        os.remove(os.path.join(workdir, name))
  elif any(os.path.exists(os.path.join(workdir, n)) for n in TABLES) and not os.path.exists(
    os.path.join(workdir, workdir_lib.CONFIG)
  ):
    raise workdir_lib.WorkdirError(
      f"--workdir={workdir} holds tables but no config.json; choose a new --workdir or pass "
      "--overwrite"
    )
  workdir_lib.check_binding(workdir, settings, env, ignore=("dpi",))
  workdir_lib.clear_stale(workdir)
  workdir_lib.check_writable(workdir, ("", "figures"))
  workdir_lib.bind(workdir, settings, env)

  key = jax.random.key(config.seed)
  diagonal = diagonal_rows(config, jax.random.fold_in(key, 0))
  cell_table = cell_rows(config, jax.random.fold_in(key, 1))
  paths = []
  for name, rows, columns in (
    ("diagonal.csv", diagonal, DIAGONAL_COLUMNS),
    ("cells.csv", cell_table, CELL_COLUMNS),
  ):
    path = os.path.join(workdir, name)
    workdir_lib.write_text_atomic(path, csv_text(rows, columns))
    paths.append(path)
  fig = figure(read_rows(paths[0]), read_rows(paths[1]))
  path = os.path.join(workdir, FIGURE)
  _save_atomic(path, lambda f: fig.savefig(f, format="png", dpi=config.dpi, bbox_inches="tight"))
  paths.append(path)
  text = report(config, read_rows(paths[0]), read_rows(paths[1]), time.perf_counter() - start)
  path = os.path.join(workdir, "report.md")
  workdir_lib.write_text_atomic(path, text)
  paths.append(path)
  return paths


def main(argv: list[str]) -> None:
  del argv
  config = _HOLDERS["config"].value
  try:
    check(config)
  except ValueError as e:
    _fail(str(e), EXIT_USAGE)
  from rnnlab import workdir as workdir_lib  # noqa: PLC0415

  start = time.perf_counter()
  try:
    workdir = workdir_lib.writable_folder(_HOLDERS["workdir"].value)
    with workdir_lib.Lock(workdir):
      paths = run(config, workdir, overwrite=_HOLDERS["overwrite"].value)
  except workdir_lib.WorkdirError as e:
    _fail(str(e), EXIT_USAGE)
  except OSError as e:
    where = e.filename or _HOLDERS["workdir"].value
    _fail(f"cannot write {where}: {e.strerror or e} (errno {e.errno}); launch again", EXIT_IO)
  except KeyboardInterrupt:
    _fail("interrupted; launch the same command again", 130)
  print(f"done in {time.perf_counter() - start:.0f}s: {len(paths)} files in {workdir}")
  for path in paths:
    print(f"  {os.path.relpath(path, workdir)}")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=parse_flags)
