"""The expRNN cell (rnnlab.cells.exprnn) and the matmul-only matrix exponential (linalg.expm)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg
from jax.test_util import check_grads

import rnnlab
from rnnlab import cells, diagnostics, linalg, testing
from rnnlab import train as rt

H, I = 8, 3

# ----------------------------------------------------------------------------- expm


def matrices(seed, n, norm, skew):
  a = np.random.default_rng(seed).normal(size=(n, n))
  a = a - a.T if skew else a
  return a * (norm / np.abs(a).sum(axis=0).max())  # 1-norm = norm


@pytest.mark.parametrize("skew", [True, False])
@pytest.mark.parametrize("norm", [1e-3, 0.7, 5.0, 40.0])
def test_expm_matches_scipy_and_jax_float64(norm, skew):
  a = matrices(1, 6, norm, skew)
  want = scipy.linalg.expm(a)
  with jax.enable_x64(True):
    got = np.asarray(linalg.expm(jnp.asarray(a)))
    via_jax = np.asarray(jax.scipy.linalg.expm(jnp.asarray(a)))
  scale = np.abs(want).max()
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * scale)
  np.testing.assert_allclose(got, via_jax, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("skew", [True, False])
@pytest.mark.parametrize("norm", [1e-3, 0.7, 5.0, 20.0])
def test_expm_float32(norm, skew):
  a = matrices(2, 6, norm, skew)
  got = np.asarray(linalg.expm(jnp.asarray(a, jnp.float32)))
  assert got.dtype == np.float32
  want = scipy.linalg.expm(a)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())
  if skew:  # orthogonal to float32 rounding
    np.testing.assert_allclose(got.T @ got, np.eye(6), atol=1e-5)


def test_expm_batched_and_vmapped_equal_one_at_a_time():
  a = jnp.asarray(np.stack([matrices(s, 4, 2.0 + s, True) for s in range(3)]), jnp.float32)
  one = np.stack([np.asarray(linalg.expm(m)) for m in a])
  np.testing.assert_allclose(np.asarray(linalg.expm(a)), one, rtol=0, atol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.vmap(linalg.expm)(a)), one, rtol=0, atol=1e-6)


@pytest.mark.slow  # over the CI budget on 2 shared cores (see the report)
@pytest.mark.parametrize("norm", [0.3, 6.0])
def test_expm_gradients(norm):
  with jax.enable_x64(True):
    a = jnp.asarray(matrices(3, 4, norm, False))
    check_grads(linalg.expm, (a,), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_expm_rejects_non_square():
  with pytest.raises(ValueError, match="square"):
    linalg.expm(jnp.zeros((2, 3)))


# ----------------------------------------------------------------------------- the cell


@pytest.mark.slow  # over the CI budget on 2 shared cores (see the report)
def test_check_cell():
  cell = cells.exprnn(4)
  params = cell.init(jax.random.key(0), 2)
  params = params._replace(b=params.b + 0.1)  # keep the modReLU's kinks away from the samples
  ran = testing.check_cell(
    cell, 2, params=params, shapes=[testing.Shapes((2,), 3)], skip=("dtypes",), seed=1
  )
  assert "fused" not in ran and "grads" in ran


@pytest.mark.slow  # over the CI budget on 2 shared cores (see the report)
def test_check_cell_tanh_parts():
  ran = testing.check_cell(
    cells.exprnn(4, "tanh"), 2, shapes=[testing.Shapes((), 3)], skip=("dtypes",), seed=2
  )
  assert "fused" in ran


def test_init_follows_the_authors():
  params = cells.exprnn(6).init(jax.random.key(0), 50)
  a = np.asarray(params.a)
  s = np.asarray(cells.skew(params.a))
  blocks = np.array([a[k, k + 1] for k in (0, 2, 4)])
  assert (np.abs(blocks) <= np.pi).all() and np.count_nonzero(a) == 3
  np.testing.assert_array_equal(s, a - a.T)
  assert np.abs(np.asarray(params.b)).max() <= 0.01
  np.testing.assert_allclose(np.asarray(params.w_ih).std(), np.sqrt(2 / 50), rtol=0.1)
  cay = np.asarray(cells.exprnn(6, recurrent_init="cayley").init(jax.random.key(0), 2).a)
  assert ((cay[[0, 2, 4], [1, 3, 5]] <= 0) & (cay[[0, 2, 4], [1, 3, 5]] >= -1)).all()


def test_prepared_params_give_the_same_step():
  cell = cells.exprnn(H)
  params = cell.init(jax.random.key(1), I)
  h = jax.random.normal(jax.random.key(2), (2, H))
  x = jax.random.normal(jax.random.key(3), (2, I))
  w = np.asarray(cell.prepare(params).w)
  np.testing.assert_allclose(
    w, scipy.linalg.expm(np.asarray(cells.skew(params.a), np.float64)), atol=1e-6
  )
  np.testing.assert_allclose(
    np.asarray(cell.step(cell.prepare(params), h, x)[0]),
    np.asarray(cell.step(params, h, x)[0]),
    rtol=1e-6,
    atol=1e-6,
  )


@pytest.mark.slow  # over the CI budget on 2 shared cores (see the report)
def test_stays_orthogonal_through_training():
  cell = cells.exprnn(H)
  params = cell.init(jax.random.key(0), I)
  xs = jax.random.normal(jax.random.key(1), (4, 6, I))
  target = jax.random.normal(jax.random.key(2), (4, 6, H))

  def loss(p):
    ys, _ = rnnlab.unroll(cell, p, xs)
    return jnp.mean((ys - target) ** 2)

  opt = optax.adam(1e-2)

  def update(carry, _):
    p, state = carry
    value, grads = jax.value_and_grad(loss)(p)
    updates, state = opt.update(grads, state, p)
    return (optax.apply_updates(p, updates), state), value

  (trained, _), losses = jax.jit(lambda p: jax.lax.scan(update, (p, opt.init(p)), None, 300))(
    params
  )
  assert losses[-1] < 0.9 * losses[0]
  w = np.asarray(cell.prepare(trained).w)
  assert np.abs(w.T @ w - np.eye(H)).max() < 1e-5
  assert np.abs(np.asarray(cells.skew(trained.a - params.a))).max() > 0.05


def test_linear_variant_keeps_every_jacobian_norm_at_one():
  cell = cells.exprnn(H, "linear")
  params = cell.init(jax.random.key(4), I)
  xs = jax.random.normal(jax.random.key(5), (2, 10, I))
  norms = diagnostics.jacobian_norms(cell, params, xs)
  np.testing.assert_allclose(np.exp(np.asarray(norms.log_spectral)), 1.0, rtol=1e-5)


@pytest.mark.slow  # over the CI budget on 2 shared cores (see the report)
def test_unroll_gradients_float64():
  with jax.enable_x64(True):
    cell = cells.exprnn(4)
    params = cell.init(jax.random.key(6), 2, dtype=jnp.float64)
    params = params._replace(b=params.b + 0.2)
    xs = jax.random.normal(jax.random.key(7), (2, 4, 2), jnp.float64)

    def loss(p):
      ys, _ = rnnlab.unroll(cell, p, xs)
      return jnp.sum(jnp.sin(ys))

    check_grads(loss, (params,), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_bad_options_raise():
  with pytest.raises(ValueError, match="activation='foo'"):
    cells.exprnn(H, activation="foo")
  with pytest.raises(ValueError, match="recurrent_init='gaussian'"):
    cells.exprnn(H, recurrent_init="gaussian")


@pytest.mark.slow  # over the CI budget on 2 shared cores (see the report)
def test_trains_from_the_config():
  config = rt.default_config()
  config.task.length = 6
  config.model.cell = "exprnn"
  config.model.hidden_size = 8
  config.batch_size = 4
  config.num_steps = 3
  config.eval.batch_size = 4
  config.eval.num_batches = 1
  _, metrics = rt.make_train(config)(jax.random.key(0))
  assert np.isfinite(np.asarray(metrics["loss"])).all()
  config.model.gain = 2.0
  with pytest.raises(ValueError, match="model.gain"):
    rt.make_train(config)
