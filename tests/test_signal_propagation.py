"""The signal-propagation experiment (experiments/signal_propagation.py): closed forms and command."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import signal_propagation as sp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = "--config=experiments/configs/signal_propagation.py:quick"


def _launch(args, env):
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.signal_propagation", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("variant", sp.VARIANTS)
def test_finite_sums_tend_to_the_stationary_closed_form(variant):
  for lam in (0.0, 0.5, 0.9, 0.99):
    s_t, v_t = sp.expected(lam, variant, [20_000])
    s_cf, v_cf = sp.closed_form(lam, variant)
    np.testing.assert_allclose([s_t[0], v_t[0]], [s_cf, v_cf], rtol=1e-9)


def test_normalised_closed_forms_are_the_derivative_of_the_normalised_sum():
  # S after t steps by finite differences of E[h_t h_t(lam')] = c c' sum (lam lam')^j, exactly.
  lam, t, eps = 0.8, 40, 1e-5

  def cov(a, b, scale):
    return scale(a) * scale(b) * np.sum((a * b) ** np.arange(t))

  for variant, scale in (
    ("gamma_through", lambda x: np.sqrt(1 - x * x)),
    ("plain", lambda x: 1.0),
  ):
    # E[(dh/dlam)^2] = d^2/da db E[h(a) h(b)] at a = b = lam.
    mixed = (
      cov(lam + eps, lam + eps, scale)
      - cov(lam + eps, lam - eps, scale)
      - cov(lam - eps, lam + eps, scale)
      + cov(lam - eps, lam - eps, scale)
    ) / (4 * eps * eps)
    np.testing.assert_allclose(sp.expected(lam, variant, [t])[0][0], mixed, rtol=1e-4)
  # gamma held fixed: the plain sum scaled by gamma^2 = 1 - lam^2.
  s_fixed = sp.expected(lam, "gamma_fixed", [t])[0][0]
  np.testing.assert_allclose(s_fixed, (1 - lam**2) * sp.expected(lam, "plain", [t])[0][0])
  # The stationary forms, and their order: normalising lowers the growth by (1 - lam^2).
  q = 0.81
  np.testing.assert_allclose(sp.closed_form(0.9, "gamma_fixed")[0], (1 + q) / (1 - q) ** 2)
  np.testing.assert_allclose(sp.closed_form(0.9, "gamma_through")[0], 1 / (1 - q) ** 2)


@pytest.mark.parametrize("variant", sp.VARIANTS)
def test_diagonal_monte_carlo_matches_the_closed_form(variant):
  import jax  # noqa: PLC0415

  lams, T, window = (0.3, 0.7, 0.9), 150, 100
  m = sp.measure_diagonal(lams, variant, T, window, 512, 1.0, jax.random.key(3))
  steps = np.arange(T - window + 1, T + 1)
  for i, lam in enumerate(lams):
    s_exp, v_exp = (np.mean(a) for a in sp.expected(lam, variant, steps))
    np.testing.assert_allclose(m["sensitivity"][i], s_exp, rtol=0.08)
    np.testing.assert_allclose(m["variance"][i], v_exp, rtol=0.08)
    assert abs(m["sensitivity"][i] - s_exp) < 4 * m["sensitivity_se"][i]
  # The curse of memory: the sensitivity grows with |lam| in every variant.
  assert np.all(np.diff(m["sensitivity"]) > 0)


def test_cell_lam_is_the_gate_value_at_zero_input():
  import jax  # noqa: PLC0415

  for name, lam in (("lstm", 0.9), ("gru", 0.75)):
    cell, set_lam = sp.cell_at(name, lam, 3)
    p = set_lam(cell.init(jax.random.key(0), 3))
    b = p.b[3:6] if name == "lstm" else p.b_ih[3:6] + p.b_hh[3:6]
    np.testing.assert_allclose(jax.nn.sigmoid(b), lam, rtol=1e-6)


def test_bad_option_is_one_line_and_exit_2(runner_env, tmp_path):
  rc, _, err = _launch([QUICK, "--config.cells.sequencs=3", f"--workdir={tmp_path}"], runner_env)
  assert rc == sp.EXIT_USAGE
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("signal_propagation: error:"), err
  assert "cells.sequences" in lines[0]  # the nearest field is named
  rc, _, err = _launch([QUICK, "--config.diagonal.window=0", f"--workdir={tmp_path}"], runner_env)
  assert rc == sp.EXIT_USAGE and err.count("\n") == 1 and "window" in err, err
  assert not os.listdir(tmp_path)  # nothing is written


@pytest.mark.slow
def test_quick_preset_end_to_end(runner_env, tmp_path):
  workdir = tmp_path / "sp"
  rc, out, err = _launch([QUICK, f"--workdir={workdir}"], runner_env)
  assert rc == 0, err[-3000:]
  for name in sp.OUTPUTS:
    assert (workdir / name).stat().st_size > 0, name
  first = {n: (workdir / n).read_bytes() for n in sp.TABLES}
  rows = sp.read_rows(str(workdir / "diagonal.csv"))
  assert len(rows) == 4 * 6
  assert max(abs(float(r["rel_error_expected"])) for r in rows) < 0.1
  report = (workdir / "report.md").read_text()
  assert "(1+\\lambda^2)/(1-\\lambda^2)^3" in report and "figures/signal_propagation.png" in report
  # Same seed, same workdir: the same bytes.
  rc, _, err = _launch([QUICK, f"--workdir={workdir}"], runner_env)
  assert rc == 0, err[-3000:]
  assert {n: (workdir / n).read_bytes() for n in sp.TABLES} == first
  # Other settings on that workdir: refused in one line, unless --overwrite.
  other = [QUICK, "--config.seed=1", f"--workdir={workdir}"]
  rc, _, err = _launch(other, runner_env)
  errors = [line for line in err.splitlines() if line.startswith("signal_propagation: error:")]
  assert rc == sp.EXIT_USAGE and len(errors) == 1 and "other settings" in errors[0], err
  assert "Traceback" not in err
