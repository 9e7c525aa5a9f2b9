"""The LRU cell (rnnlab.cells.lru): its init, normalisation, reference maths and training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells, diagnostics, testing
from rnnlab import train as rt


def numpy_lru(params, xs_TxI, readout):
  """The LRU in numpy complex arithmetic, from the paper's appendix A equations."""
  p = {k: None if v is None else np.asarray(v, np.float64) for k, v in params._asdict().items()}
  lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
  b_norm = (p["b_re"] + 1j * p["b_im"]) * np.exp(p["gamma_log"])  # (I, N), columns scaled
  c = p["c_re"] + 1j * p["c_im"]
  h = np.zeros(lam.shape, np.complex128)
  ys = []
  for x in np.asarray(xs_TxI, np.float64):
    h = lam * h + x @ b_norm
    z = (h @ c).real + (x * p["d"] if p["d"].ndim == 1 else x @ p["d"])
    if readout == "glu":
      g = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))  # tanh GELU
      value, gate = np.split(g @ p["w_glu"] + p["b_glu"], 2)
      z = value / (1 + np.exp(-gate))
    ys.append(z)
  return np.stack(ys), h


@pytest.mark.slow  # about 10 s under CI's load: in .ci/run's slow phase
def test_check_cell():
  ran = testing.check_cell(cells.lru(3, state_size=3), 2, shapes=[((2,), 3)], seed=1)
  assert "grads" in ran and "padding" in ran


def test_ring_initialisation():
  def init(**options):  # eager, all at one size: the operations compile once
    return cells.lru(3, state_size=2048, **options).init(jax.random.key(0), 2)

  params = init(r_min=0.4, r_max=0.9, max_phase=1.5)
  modulus_sq = np.exp(-2 * np.exp(np.asarray(params.nu_log, np.float64)))
  phase = np.exp(np.asarray(params.theta_log, np.float64))
  assert np.all((modulus_sq >= 0.4**2 - 1e-6) & (modulus_sq <= 0.9**2 + 1e-6))
  assert np.all((phase >= 0) & (phase <= 1.5 + 1e-6))
  # Uniform over the ring's area: |lambda|^2 ~ U[r_min^2, r_max^2] (mean 0.485; a uniform
  # |lambda| would give 0.443), phases ~ U[0, max_phase].
  assert abs(modulus_sq.mean() - (0.4**2 + 0.9**2) / 2) < 0.015
  assert abs(phase.mean() - 0.75) < 0.04
  np.testing.assert_allclose(np.exp(params.gamma_log), np.sqrt(1 - modulus_sq), rtol=1e-5)
  # Degenerate rings: the draws are kept inside (0, 1), so every parameter is finite
  # (unclipped, |lambda| = 1 gives nu_log = gamma_log = -inf and |lambda| = 0 nu_log = inf).
  for ring in (0.0, 1.0):
    degenerate = init(r_min=ring, r_max=ring)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(degenerate)), ring
    np.testing.assert_allclose(np.exp(-np.exp(degenerate.nu_log)), ring, atol=1e-6)


def test_normalisation_gives_unit_stationary_variance():
  # White unit-variance input and unit-norm columns of B: E|h_n|^2 = 1 for every |lambda_n|.
  cell = cells.lru(3, state_size=3, r_min=0.3, r_max=0.95, readout="none")
  params = cell.init(jax.random.key(0), 2)
  scale = np.sqrt(np.sum(np.asarray(params.b_re) ** 2 + np.asarray(params.b_im) ** 2, axis=0))
  params = params._replace(b_re=params.b_re / scale, b_im=params.b_im / scale)
  xs = jax.random.normal(jax.random.key(1), (4096, 160, 2))

  @jax.jit
  def variance(params):
    def body(carry, x_BxI):
      carry, _ = cell.step(params, carry, x_BxI)
      return carry, carry

    _, states = jax.lax.scan(body, cell.initial_carry(params, (4096,)), jnp.swapaxes(xs, 0, 1))
    return jnp.mean(states.re[100:] ** 2 + states.im[100:] ** 2, axis=(0, 1))

  np.testing.assert_allclose(variance(params), 1.0, rtol=0.03)
  # Without gamma the variance is 1 / (1 - |lambda|^2): the test can tell.
  modulus_sq = np.exp(-2 * np.exp(np.asarray(params.nu_log)))
  unnormalised = variance(params._replace(gamma_log=jnp.zeros_like(params.gamma_log)))
  np.testing.assert_allclose(unnormalised, 1 / (1 - modulus_sq), rtol=0.05)
  assert np.max(1 / (1 - modulus_sq)) > 2


@pytest.mark.parametrize("readout, input_size, hidden_size", [("glu", 2, 3), ("none", 3, 3)])
def test_unroll_equals_a_numpy_complex_reference(readout, input_size, hidden_size):
  cell = cells.lru(hidden_size, state_size=3, r_min=0.5, r_max=0.99, readout=readout)
  params = cell.init(jax.random.key(2), input_size)
  # Nonzero GLU biases, so that they are checked too.
  if readout == "glu":
    params = params._replace(b_glu=jax.random.normal(jax.random.key(4), params.b_glu.shape))
  assert params.d.ndim == (1 if input_size == hidden_size else 2)
  xs = jax.random.normal(jax.random.key(3), (5, input_size))
  ys, carry = rnnlab.unroll(cell, params, xs)
  want_ys, want_h = numpy_lru(params, xs, readout)
  np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(carry.re + 1j * carry.im, want_h, rtol=1e-5, atol=1e-5)


def test_jacobian_norms_are_powers_of_the_moduli():
  cell = cells.lru(3, state_size=3, r_min=0.5, r_max=0.95)
  params = cell.init(jax.random.key(0), 2)
  xs = jax.random.normal(jax.random.key(1), (6, 2))
  norms = diagnostics.jacobian_norms(cell, params, xs)
  modulus = np.exp(-np.exp(np.asarray(params.nu_log, np.float64)))
  lags = np.arange(7)[:, None]
  # dc_T/dc_t: 2x2 blocks |lambda_n|^lag times a rotation, so each power appears twice.
  want = np.sort(np.repeat(modulus, 2)[None, :] ** lags, axis=1)[:, ::-1]
  np.testing.assert_allclose(np.exp(norms.log_singular_values), want, rtol=1e-4)
  np.testing.assert_allclose(np.exp(norms.log_spectral), modulus.max() ** lags[:, 0], rtol=1e-4)


def test_lru_is_a_built_in_cell_of_the_training_config():
  config = rt.default_config()
  config.model.cell = "lru"
  config.model.hidden_size = 4
  model = rt.make_model(config)
  params = jax.eval_shape(model.init, jax.random.key(0))
  assert isinstance(params.encoder[0], cells.LRUParams)
  assert params.encoder[0].w_glu.shape == (4, 8)  # the GLU readout, by default
  assert params.encoder[0].b_re.shape == (2, 4)  # the adding task's 2 inputs, N = H


@pytest.mark.slow  # compiles a whole training run (about 4 s)
def test_make_train_with_lru_lowers_the_loss():
  config = rt.default_config()
  config.model.cell = "lru"
  config.model.hidden_size = 8
  config.task.length = 5
  config.batch_size = 32
  config.num_steps = 60
  config.optimizer.learning_rate = 1e-2
  config.eval.num_batches = 0
  params, metrics = jax.jit(rt.make_train(config))(jax.random.key(0))
  assert isinstance(params.encoder[0], cells.LRUParams)
  loss = np.asarray(metrics["loss"])
  assert np.isfinite(loss).all()
  assert loss[-10:].mean() < 0.5 * loss[:10].mean(), loss


def test_bad_options_raise_one_line_errors():
  with pytest.raises(ValueError, match=r"lru: readout='mlp' is not supported"):
    cells.lru(4, readout="mlp")
  with pytest.raises(ValueError, match=r"r_min=0.9, r_max=0.5 are invalid"):
    cells.lru(4, r_min=0.9, r_max=0.5)
  with pytest.raises(ValueError, match=r"r_min=0.0, r_max=1.5 are invalid"):
    cells.lru(4, r_max=1.5)
  with pytest.raises(ValueError, match=r"max_phase=0 is invalid"):
    cells.lru(4, max_phase=0)
  with pytest.raises(ValueError, match=r"lru: state_size must be None or a positive int; got 0"):
    cells.lru(4, state_size=0)
  glu_params = cells.lru(3, state_size=3).init(jax.random.key(0), 2)
  zeros = jnp.zeros(3)
  with pytest.raises(ValueError, match=r"this cell's readout is 'none'"):
    cells.lru(3, readout="none").step(glu_params, cells.LRUCarry(zeros, zeros), jnp.ones(2))
  config = rt.default_config()
  config.model.cell = "lru"
  config.model.chrono_t_max = 8.0
  with pytest.raises(ValueError, match=r"model.chrono_t_max=8.0 .* None for the lru cell"):
    rt.make_model(config)
  config.model.chrono_t_max = None
  config.model.dropout.recurrent = 0.1
  with pytest.raises(ValueError, match=r"model.dropout.recurrent=0.1 .* 0 for the lru cell"):
    rt.make_model(config)
