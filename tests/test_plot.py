"""rnnlab.plot: each figure holds the data it was given, with its axes labelled.

Synthetic arrays with known values first (read back from the Line2D and scatter
objects), then the real diagnostics of a tiny LSTM and Elman cell, then every
figure rendered to PNG and SVG without a warning.
"""

from __future__ import annotations

import io
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

import rnnlab
from rnnlab import diagnostics as diag
from rnnlab import plot

LN10 = math.log(10)


def lines(ax):
  return ax.get_lines()


def labelled(ax):
  """``{label: Line2D}`` of the lines with a legend label."""
  return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def bands(ax):
  return [c for c in ax.collections if isinstance(c, PolyCollection)]


# ---------------------------------------------------------------------------
# Synthetic arrays.
# ---------------------------------------------------------------------------


def test_grad_norm_vs_lag_draws_the_log10_of_its_input():
  lags = np.arange(12)
  rate = math.log(0.5)
  fig = plot.grad_norm_vs_lag(rate * lags, label="tanh RNN")
  assert isinstance(fig, Figure) and len(fig.axes) == 1
  ax = fig.axes[0]
  (line,) = lines(ax)
  np.testing.assert_allclose(line.get_xdata(), lags)
  np.testing.assert_allclose(line.get_ydata() * LN10, rate * lags)
  # An exact geometric decay: the legend gives its factor per step.
  assert line.get_label() == "tanh RNN: ×0.5/step"
  assert ax.get_xlabel() == "lag T − 1 − t (steps)" and "partial L" in ax.get_ylabel()
  assert not bands(ax)
  # Powers of ten on the y axis: at least two decades shown.
  low, high = ax.get_ylim()
  assert high - low >= 2 and ax.yaxis.get_major_formatter()(-3, 0) == "$10^{-3}$"


def test_grad_norm_vs_lag_runs_are_a_median_and_a_band():
  lags = np.arange(6.0)
  runs = np.stack([-0.2 * lags, -0.4 * lags - 1, -0.3 * lags])  # (3 runs, 6 lags)
  runs[1, 5] = -np.inf  # an underflow: in the median, out of the band
  fig = plot.grad_norm_vs_lag({"LSTM": runs, "GRU": runs[:1]}, lags, show_rate=False)
  ax = fig.axes[0]
  by_label = labelled(ax)
  assert list(by_label) == ["LSTM", "GRU"]
  np.testing.assert_allclose(by_label["LSTM"].get_ydata() * LN10, np.median(runs, axis=0))
  np.testing.assert_allclose(by_label["GRU"].get_ydata() * LN10, runs[0])
  # The cells keep the runner's colours.
  assert by_label["LSTM"].get_color() == plot.CELL_COLORS["lstm"]
  assert by_label["GRU"].get_color() == plot.CELL_COLORS["gru"]
  (band,) = bands(ax)  # one band: the LSTM's three runs, from -2.6 (run 1, lag 4) to 0
  edge = band.get_paths()[0].vertices[:, 1] * LN10
  assert np.isclose(edge.max(), 0.0) and np.isclose(edge.min(), -2.6)
  median, lo, hi = plot.median_band(runs)
  assert (median[5], lo[5], hi[5]) == (-1.5, -1.5, -1.0)  # the -inf left out of the band only
  assert ax.get_legend().get_title().get_text() == "median, min–max over runs"


def test_log_norms_by_lag_reverses_time_and_takes_logs():
  norms_TxB = np.array([[1.0, 2.0], [0.5, 0.0], [0.25, 4.0]])  # (T=3, B=2), time first
  out = plot.log_norms_by_lag(norms_TxB)
  assert out.shape == (2, 3)
  np.testing.assert_allclose(out[0], np.log([0.25, 0.5, 1.0]))  # lag 0 is the last step
  assert out[1, 1] == -np.inf and np.isclose(out[1, 0], np.log(4.0))
  rates = plot.decay_rates(np.log(0.9) * np.arange(5.0))
  assert np.isclose(rates, np.log(0.9))


def fake_jacobian_norms(num_lags=5, n=3):
  lags = np.arange(num_lags)
  log_sv = -np.outer(lags, [0.1, 0.5, 1.0])[:, :n]  # sigma_i = exp(-rate_i * lag)
  return diag.JacobianNorms(
    lags=lags,
    log_spectral=log_sv[:, 0],
    log_frobenius=0.5 * np.log(np.sum(np.exp(2 * log_sv), axis=1)),
    log_singular_values=log_sv,
  )


def test_jacobian_norms_spectral_frobenius_and_every_singular_value():
  jn = fake_jacobian_norms()
  fig = plot.jacobian_norms(jn)
  ax = fig.axes[0]
  drawn = lines(ax)
  assert len(drawn) == 2 + 2  # sigma_2, sigma_3, Frobenius, spectral
  np.testing.assert_allclose(drawn[0].get_ydata() * LN10, jn.log_singular_values[:, 1])
  np.testing.assert_allclose(drawn[1].get_ydata() * LN10, jn.log_singular_values[:, 2])
  by_label = labelled(ax)
  np.testing.assert_allclose(by_label["Frobenius"].get_ydata() * LN10, jn.log_frobenius)
  np.testing.assert_allclose(by_label[r"spectral ($\sigma_1$)"].get_ydata() * LN10, jn.log_spectral)
  assert ax.get_xlabel() == "lag T − t (steps)" and "partial c_T" in ax.get_ylabel()
  # The power method: NaN Frobenius norms and no singular values, so one line.
  power = jn._replace(
    log_frobenius=np.full(5, np.nan), log_singular_values=np.zeros((5, 0), np.float32)
  )
  assert len(lines(plot.jacobian_norms(power).axes[0])) == 1


def test_eigenvalues_in_the_complex_plane_with_the_unit_circle():
  rotation = np.array([[0.0, -0.9], [0.9, 0.0]])  # eigenvalues +-0.9i
  fig = plot.eigenvalues({"W": rotation, "given": np.array([1.2, -0.5])})
  ax = fig.axes[0]
  scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
  assert len(scatters) == 2
  points = scatters[0].get_offsets()
  np.testing.assert_allclose(sorted(points[:, 1]), [-0.9, 0.9])
  np.testing.assert_allclose(points[:, 0], 0.0, atol=1e-12)
  np.testing.assert_allclose(scatters[1].get_offsets(), [[1.2, 0.0], [-0.5, 0.0]])
  assert scatters[0].get_label() == r"W ($\rho$ = 0.9)"
  circle = labelled(ax)[r"$|\lambda| = 1$"]
  np.testing.assert_allclose(np.hypot(circle.get_xdata(), circle.get_ydata()), 1.0)
  assert ax.get_aspect() == 1.0 and ax.get_xlim()[1] >= 1.2  # the outlier stays in view
  assert ax.get_xlabel() == r"Re $\lambda$" and ax.get_ylabel() == r"Im $\lambda$"


def test_singular_values_descending_with_a_line_at_one():
  rng = np.random.default_rng(0)
  w = rng.standard_normal((5, 5))
  fig = plot.singular_values(w, label="W")
  ax = fig.axes[0]
  line = labelled(ax)[f"W ($\\sigma_1$ = {np.linalg.norm(w, 2):.3g})"]
  np.testing.assert_allclose(line.get_ydata(), np.linalg.svd(w, compute_uv=False))
  np.testing.assert_allclose(line.get_xdata(), np.arange(1, 6))
  assert ax.get_yscale() == "log" and np.allclose(labelled(ax)[r"$\sigma = 1$"].get_ydata(), 1)
  # Equal singular values (an orthogonal matrix) keep a readable range around 1.
  ax = plot.singular_values(np.eye(4)).axes[0]
  low, high = ax.get_ylim()
  assert low <= 0.5 and high >= 2


def test_lyapunov_spectrum_draws_the_exponents_against_their_index():
  exponents = np.array([[-0.1, -0.3, -0.7], [-0.2, -0.4, -0.6]])  # 2 seeds, k = 3
  fig = plot.lyapunov_spectrum({"elman": exponents, "gru": exponents[0]})
  ax = fig.axes[0]
  by_label = labelled(ax)
  np.testing.assert_allclose(by_label["elman"].get_ydata(), np.median(exponents, axis=0))
  np.testing.assert_allclose(by_label["gru"].get_ydata(), exponents[0])
  np.testing.assert_allclose(by_label["gru"].get_xdata(), [1, 2, 3])
  assert len(bands(ax)) == 1
  assert "Lyapunov exponent" in ax.get_ylabel() and ax.get_xlabel() == "index i"


def fake_gate_stats(num_steps=7):
  t = np.linspace(0, 1, num_steps)
  return {
    "gates": {
      "i": {"mean": 0.5 + 0 * t, "saturated": 0.1 * t},
      "f": {"mean": 0.9 - 0.1 * t, "saturated": 0.3 * t},
    },
    "units": {"tanh_c": {"mean": 0 * t, "saturated": 0.2 * t}},
  }


def test_gate_statistics_means_and_saturation_over_time():
  stats = fake_gate_stats()
  fig = plot.gate_statistics(stats)
  means, saturation = fig.axes
  assert [ln.get_label() for ln in lines(means)] == ["input gate i", "forget gate f"]
  np.testing.assert_allclose(lines(means)[1].get_ydata(), stats["gates"]["f"]["mean"])
  drawn = lines(saturation)
  assert len(drawn) == 3 and drawn[2].get_linestyle() == "--"  # the tanh unit dashed
  np.testing.assert_allclose(drawn[2].get_ydata(), stats["units"]["tanh_c"]["saturated"])
  np.testing.assert_allclose(drawn[0].get_xdata(), np.arange(7))
  assert means.get_xlabel() == "step t" and saturation.get_ylabel() == "share saturated"
  assert len(fig.legends) == 1  # one legend below both panels
  with pytest.raises(ValueError, match="quantities"):
    plot.gate_statistics(stats, quantities=("hist",))


def test_training_curves_runs_median_baseline_and_a_diverged_cross():
  steps = np.arange(0, 40, 2)
  losses = np.stack([np.exp(-steps / 10), 2 * np.exp(-steps / 10), np.exp(-steps / 20)])
  losses[2, 15:] = np.nan  # a run that diverged at its 16th record
  fig = plot.training_curves({"LSTM": losses}, steps, baseline=1 / 6)
  ax = fig.axes[0]
  drawn = lines(ax)
  faint, bold = drawn[:3], drawn[3]
  for line, row in zip(faint, losses, strict=True):
    np.testing.assert_allclose(line.get_ydata(), row)
    np.testing.assert_allclose(line.get_xdata(), steps)
  np.testing.assert_allclose(bold.get_ydata(), np.nanmedian(losses, axis=0))
  assert bold.get_label() == "LSTM"
  (cross,) = [ln for ln in drawn if ln.get_marker() == "x"]
  assert cross.get_xdata()[0] == steps[14] and cross.get_ydata()[0] == losses[2, 14]
  baseline = labelled(ax)["trivial baseline"]
  assert np.allclose(baseline.get_ydata(), 1 / 6) and baseline.get_linestyle() == "--"
  assert ax.get_yscale() == "log" and ax.get_xlabel() == "training step (updates)"
  # Smoothing: the bold line is the trailing mean (one run: over its raw curve).
  ax = plot.training_curves(losses[0], smooth=3).axes[0]
  faint, bold = lines(ax)
  np.testing.assert_allclose(faint.get_ydata(), losses[0])
  expected = [np.mean(losses[0][max(0, i - 2) : i + 1]) for i in range(steps.size)]
  np.testing.assert_allclose(bold.get_ydata(), expected)
  with pytest.raises(ValueError, match="smooth"):
    plot.training_curves(losses, smooth=0)


def test_drawing_into_a_given_axes_returns_its_figure():
  fig, axes = plot.new_figure(8, 3, nrows=1, ncols=3)
  assert plot.grad_norm_vs_lag(-np.arange(4.0), ax=axes[0]) is fig
  assert plot.lyapunov_spectrum(np.array([0.1, -0.2]), ax=axes[1], title="mine") is fig
  assert plot.training_curves(np.ones(5), ax=axes[2], baseline=2.0) is fig
  assert axes[1].get_title() == "mine" and len(fig.axes) == 3


# ---------------------------------------------------------------------------
# Real diagnostics of a tiny model.
# ---------------------------------------------------------------------------

H, T, B, I = 3, 8, 2, 2


@pytest.fixture(scope="module")
def tiny():
  """The diagnostics of a tiny LSTM (and an Elman cell's weights) on one small batch.

  All in one jitted program: one compilation (about a second) instead of one per op.
  """
  key = jax.random.key(0)
  xs = jax.random.normal(key, (B, T, I))
  lstm = rnnlab.lstm(H)
  params = lstm.init(key, I)

  def loss(params, xs):
    ys, _ = rnnlab.unroll(lstm, params, xs)
    return jnp.mean(ys[:, -1] ** 2)

  @jax.jit
  def diagnose(params, xs):
    grads = diag.state_grads(loss)(params, xs)
    return {
      "norms": diag.step_norms(grads).h,  # the params are one cell's: its carry's gradients
      "jacobian": diag.jacobian_norms(lstm, params, xs),
      "lyapunov": diag.lyapunov_spectrum(lstm, params, xs, num_exponents=4),
      "gates": diag.gate_statistics(lstm, params, xs),
    }

  elman = rnnlab.elman(H, gain=1.5)
  out = jax.tree.map(np.asarray, diagnose(params, xs))
  return {**out, "lstm": lstm, "params": params, "elman": elman, "elman_params": elman.init(key, I)}


def test_real_diagnostics_are_drawn_as_they_are(tiny):
  logs = plot.log_norms_by_lag(tiny["norms"])  # (B, T)
  ax = plot.grad_norm_vs_lag(logs).axes[0]
  np.testing.assert_allclose(
    lines(ax)[0].get_ydata() * LN10, np.median(np.log(tiny["norms"][::-1].T), axis=0), rtol=1e-6
  )
  jn = tiny["jacobian"]  # batch (B,) in front: the median over the sequences
  ax = plot.jacobian_norms(jn).axes[0]
  spectral = labelled(ax)[r"spectral ($\sigma_1$)"]
  np.testing.assert_allclose(spectral.get_ydata() * LN10, np.median(jn.log_spectral, 0), rtol=1e-6)
  assert len(lines(ax)) == 2 * H - 1 + 2  # the LSTM carry (h, c): n = 2H singular values
  ax = plot.lyapunov_spectrum(tiny["lyapunov"]).axes[0]
  assert len(lines(ax)) == 2  # the line at 0, then the exponents
  np.testing.assert_allclose(lines(ax)[1].get_ydata(), np.median(tiny["lyapunov"], 0), rtol=1e-6)
  fig = plot.gate_statistics(tiny["gates"])
  assert len(lines(fig.axes[0])) == 3 and len(lines(fig.axes[1])) == 5  # i f o; + g, tanh_c
  forget = [ln for ln in lines(fig.axes[0]) if ln.get_label() == "forget gate f"][0]
  np.testing.assert_allclose(forget.get_ydata(), tiny["gates"]["gates"]["f"]["mean"], rtol=1e-6)


def test_recurrent_spectra_per_gate_block(tiny):
  fig = plot.recurrent_spectra(tiny["lstm"], tiny["params"])
  eig_ax, sv_ax = fig.axes
  scatters = [c for c in eig_ax.collections if isinstance(c, PathCollection)]
  assert [s.get_label().split(" ")[0] for s in scatters] == ["i", "f", "g", "o"]
  blocks = plot.recurrent_blocks(tiny["lstm"], tiny["params"])
  for scatter, w in zip(scatters, blocks.values(), strict=True):
    expected = np.linalg.eigvals(w)
    got = scatter.get_offsets()
    np.testing.assert_allclose(
      np.sort_complex(got[:, 0] + 1j * got[:, 1]), np.sort_complex(expected)
    )
  # The Elman cell at gain 1.5: one block, every singular value 1.5 (orthogonal init).
  fig = plot.recurrent_spectra(tiny["elman"], tiny["elman_params"])
  line = lines(fig.axes[1])[0]
  np.testing.assert_allclose(line.get_ydata(), 1.5, rtol=1e-5)
  rho = float(diag.recurrent_spectra(tiny["elman"], tiny["elman_params"])["spectral_radius"]["h"])
  assert f"{rho:.3g}" in fig.axes[0].collections[0].get_label()


def test_every_figure_renders_without_warnings(tiny):
  figures = [
    plot.grad_norm_vs_lag(plot.log_norms_by_lag(tiny["norms"])),
    plot.jacobian_norms(tiny["jacobian"]),
    plot.recurrent_spectra(tiny["lstm"], tiny["params"]),
    plot.lyapunov_spectrum(tiny["lyapunov"]),
    plot.gate_statistics(tiny["gates"]),
    plot.training_curves(np.exp(-np.arange(50.0)[None] / 9) + np.zeros((3, 1)), baseline=0.5),
  ]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    for fig in figures:
      for fmt in ("png", "svg"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=40)
        assert buffer.getvalue()[:4] in (b"\x89PNG", b"<?xm")
